/*
 * log.h - nbxd's log: one line per event on stderr, with time, level and,
 * where there is one, the peer:  "2026-11-28T17:40:01.123Z info [lv] ...".
 */
#ifndef NBX_LOG_H
#define NBX_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Lines above this level are dropped (default LOG_INFO; NBX_DEBUG=1 env). */
void log_set_level(enum log_level l);

/* Logs one line; peer may be NULL. */
void log_msg(enum log_level l, const char *peer, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Formats a Unix time in ms as ISO-8601 UTC with milliseconds. */
void log_time_iso(uint64_t ms, char *out, size_t len);

/* Wall-clock time in Unix milliseconds. */
uint64_t log_now_ms(void);

#endif
