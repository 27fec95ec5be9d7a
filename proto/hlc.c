/*
 * hlc.c - hybrid logical clock.  With (ms << 16 | counter) packing, "take
 * the max, then add one" is the whole HLC update rule, and a full counter
 * carries into the millisecond part instead of wrapping.
 */
#include "hlc.h"
#include "nbx_err.h"

static uint64_t
wall_hlc(uint64_t wall_ms)
{
	if (wall_ms > HLC_MS_MAX)
		wall_ms = HLC_MS_MAX;
	return HLC_MAKE(wall_ms, 0);
}

void
hlc_init(struct hlc *c, uint64_t last)
{
	c->last = last;
}

uint64_t
hlc_now(struct hlc *c, uint64_t wall_ms)
{
	uint64_t w = wall_hlc(wall_ms);

	if (w > c->last)
		c->last = w;
	else if (c->last != UINT64_MAX)
		c->last++;	/* counter overflow carries into ms */
	return c->last;
}

int
hlc_check_drift(uint64_t remote, uint64_t wall_ms, uint64_t max_drift_ms)
{
	if (HLC_MS(remote) > wall_ms + max_drift_ms)
		return NBX_EDRIFT;
	return 0;
}

int
hlc_receive(struct hlc *c, uint64_t remote, uint64_t wall_ms,
    uint64_t max_drift_ms)
{
	int rc;

	if ((rc = hlc_check_drift(remote, wall_ms, max_drift_ms)) != 0)
		return rc;
	if (remote > c->last)
		c->last = remote;
	return 0;
}
