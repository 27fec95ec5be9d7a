/*
 * cli.c - the usage error of the command-line tools (cli.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "cli.h"

int
cli_usage_error(const char *fmt, ...)
{
	const char *prog = program_invocation_short_name;
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(see %s --help)\n", prog);
	return EXIT_USAGE;
}
