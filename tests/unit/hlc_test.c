/* hlc_test.c - the hybrid logical clock: monotonicity, overflow, drift. */
#include <criterion/criterion.h>

#include "hlc.h"
#include "nbx_err.h"

Test(hlc, follows_wall_clock)
{
	struct hlc c;

	hlc_init(&c, 0);
	cr_assert_eq(hlc_now(&c, 1000), HLC_MAKE(1000, 0));
	cr_assert_eq(hlc_now(&c, 1005), HLC_MAKE(1005, 0));
}

Test(hlc, monotonic_when_wall_clock_goes_backwards)
{
	struct hlc c;
	uint64_t prev;

	hlc_init(&c, 0);
	prev = hlc_now(&c, 5000);
	for (uint64_t wall = 4999; wall > 4000; wall -= 7) {
		uint64_t t = hlc_now(&c, wall);

		cr_assert_gt(t, prev, "wall %llu", (unsigned long long)wall);
		cr_assert_eq(HLC_MS(t), 5000, "physical part must not go back");
		prev = t;
	}
	/* the wall clock catching up resets the counter */
	cr_assert_eq(hlc_now(&c, 6000), HLC_MAKE(6000, 0));
}

Test(hlc, same_millisecond_counts_up)
{
	struct hlc c;

	hlc_init(&c, 0);
	cr_assert_eq(hlc_now(&c, 7), HLC_MAKE(7, 0));
	cr_assert_eq(hlc_now(&c, 7), HLC_MAKE(7, 1));
	cr_assert_eq(hlc_now(&c, 7), HLC_MAKE(7, 2));
}

Test(hlc, counter_overflow_carries_into_milliseconds)
{
	struct hlc c;
	uint64_t t;

	hlc_init(&c, HLC_MAKE(100, 0xfffe));
	t = hlc_now(&c, 100);
	cr_assert_eq(t, HLC_MAKE(100, 0xffff));
	t = hlc_now(&c, 100);
	cr_assert_eq(t, HLC_MAKE(101, 0), "overflow must carry, got %llx",
	    (unsigned long long)t);
	cr_assert_gt(hlc_now(&c, 100), t);
}

Test(hlc, receive_advances_clock)
{
	struct hlc c;

	hlc_init(&c, 0);
	hlc_now(&c, 1000);
	cr_assert_eq(hlc_receive(&c, HLC_MAKE(1200, 5), 1000, 500), 0);
	cr_assert_eq(hlc_now(&c, 1000), HLC_MAKE(1200, 6));
	/* an older remote time does not move it back */
	cr_assert_eq(hlc_receive(&c, HLC_MAKE(10, 0), 1000, 500), 0);
	cr_assert_eq(hlc_now(&c, 1000), HLC_MAKE(1200, 7));
}

Test(hlc, drift_bound_rejects_without_moving_clock)
{
	struct hlc c;
	uint64_t before;

	hlc_init(&c, 0);
	before = hlc_now(&c, 1000);
	/* exactly at the bound is accepted, one ms past is not */
	cr_assert_eq(hlc_check_drift(HLC_MAKE(1500, 0xffff), 1000, 500), 0);
	cr_assert_eq(hlc_check_drift(HLC_MAKE(1501, 0), 1000, 500), NBX_EDRIFT);
	cr_assert_eq(hlc_receive(&c, HLC_MAKE(1000 + 3600 * 1000, 0), 1000, 500),
	    NBX_EDRIFT);
	cr_assert_eq(c.last, before, "a rejected time must not move the clock");
	cr_assert_eq(hlc_now(&c, 1000), before + 1);
}

Test(hlc, wall_time_beyond_48_bits_is_clamped)
{
	struct hlc c;

	hlc_init(&c, 0);
	cr_assert_eq(HLC_MS(hlc_now(&c, UINT64_MAX)), HLC_MS_MAX);
}
