/*
 * hlc.h - hybrid logical clock (Kulkarni et al. 2014).
 *
 * A timestamp is 64 bits: the high 48 hold Unix milliseconds, the low 16 a
 * counter.  Packing the two this way makes "counter overflow" a carry into
 * the millisecond part, so the clock never stalls and never goes back.
 * Wall time always comes in as an argument; this module reads no clock.
 */
#ifndef NBX_HLC_H
#define NBX_HLC_H

#include <stdint.h>

#define HLC_MS(h)	((uint64_t)(h) >> 16)
#define HLC_CTR(h)	((uint64_t)(h) & 0xffffu)
#define HLC_MAKE(ms, c)	(((uint64_t)(ms) << 16) | ((uint64_t)(c) & 0xffffu))
#define HLC_MS_MAX	((UINT64_C(1) << 48) - 1)

#define HLC_DEFAULT_DRIFT_MS 500

struct hlc {
	uint64_t last;		/* the greatest timestamp issued or received */
};

/* Starts a clock at `last` (0 for a new node, the persisted value after). */
void hlc_init(struct hlc *c, uint64_t last);

/*
 * Issues a timestamp for a local event at wall time `wall_ms`.  The result
 * is strictly greater than every timestamp issued or received before, even
 * when the wall clock went backwards.
 */
uint64_t hlc_now(struct hlc *c, uint64_t wall_ms);

/*
 * Checks a remote timestamp against the drift bound: returns NBX_EDRIFT if
 * its physical part is more than `max_drift_ms` ahead of `wall_ms`, else 0.
 * Pure: moves no clock.
 */
int hlc_check_drift(uint64_t remote, uint64_t wall_ms, uint64_t max_drift_ms);

/*
 * Takes in a timestamp carried by a received change.  If it violates the
 * drift bound, returns NBX_EDRIFT and leaves the clock untouched; otherwise
 * advances the clock so that the next hlc_now() is greater than `remote`,
 * and returns 0.
 */
int hlc_receive(struct hlc *c, uint64_t remote, uint64_t wall_ms,
    uint64_t max_drift_ms);

#endif
