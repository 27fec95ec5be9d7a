/* log.c - one line per event on stderr. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "log.h"

static enum log_level max_level = LOG_INFO;
static const char *const names[] = { "error", "warn", "info", "debug" };

void
log_set_level(enum log_level l)
{
	max_level = l;
}

uint64_t
log_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
log_time_iso(uint64_t ms, char *out, size_t len)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	char b[32];

	gmtime_r(&s, &tm);
	strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, len, "%s.%03uZ", b, (unsigned)(ms % 1000));
}

void
log_msg(enum log_level l, const char *peer, const char *fmt, ...)
{
	char ts[40], line[1024];
	va_list ap;

	if (l > max_level)
		return;
	log_time_iso(log_now_ms(), ts, sizeof(ts));
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (peer)
		fprintf(stderr, "%s %s [%s] %s\n", ts, names[l], peer, line);
	else
		fprintf(stderr, "%s %s %s\n", ts, names[l], line);
}
