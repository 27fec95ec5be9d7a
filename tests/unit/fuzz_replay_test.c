/*
 * fuzz_replay_test.c - replays every input kept in tests/fuzz/corpus/
 * <harness>/ through the harness's own body, so that each seed and each
 * past finding stays a regression test in the ordinary (and the asan)
 * unit-test build, without libFuzzer.
 *
 * The harness files are included here whole: compiled without
 * NBX_LIBFUZZER they define only their nbx_fuzz_<name> functions (see
 * tests/fuzz/fuzz_common.h).  A harness aborts on a violated property,
 * which fails that harness's test; the name of the input being replayed
 * is printed first.
 *
 * libFuzzer artifacts not yet triaged (crash-*, leak-*, timeout-*, oom-*,
 * slow-unit-*) are skipped and counted, so that a finding can be kept
 * next to the corpus before its fix lands; once fixed, rename it
 * regress-<what> and it is replayed like the rest.  NBX_FUZZ_REPLAY_ALL=1
 * replays them too.  Runs from the repository root.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../fuzz/audit_fuzz.c"
#include "../fuzz/change_fuzz.c"
#include "../fuzz/config_fuzz.c"
#include "../fuzz/control_fuzz.c"
#include "../fuzz/frame_fuzz.c"
#include "../fuzz/import_fuzz.c"
#include "../fuzz/jsplit_fuzz.c"
#include "../fuzz/recon_fuzz.c"
#include "../fuzz/record_fuzz.c"
#include "../fuzz/schema_fuzz.c"
#include "../fuzz/session_fuzz.c"

#define CORPUS	"tests/fuzz/corpus"

typedef int harness_fn(const uint8_t *data, size_t size);

/* The input being replayed, named if the process dies on it. */
static char replaying[512];

/* Called by a sanitizer before it ends the process, when linked with one. */
void __sanitizer_set_death_callback(void (*cb)(void)) __attribute__((weak));

static void
say_replaying(void)
{
	if (replaying[0] != 0)
		fprintf(stderr, "fuzz_replay: died replaying %s\n", replaying);
}

/* A harness check failed (abort): name the input, then die as before. */
static void
on_abort(int sig)
{
	static const char msg[] = "fuzz_replay: died replaying ";
	size_t n = strlen(replaying);

	if (n > 0) {
		(void)!write(2, msg, sizeof(msg) - 1);
		(void)!write(2, replaying, n);
		(void)!write(2, "\n", 1);
	}
	raise(sig);
}

static int
is_artifact(const char *name)
{
	static const char *const prefixes[] = { "crash-", "leak-", "timeout-",
	    "oom-", "slow-unit-" };

	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
		if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
			return 1;
	return 0;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static uint8_t *
read_file(const char *path, size_t *size)
{
	FILE *f = fopen(path, "rb");
	uint8_t *p = NULL;
	long n;

	cr_assert_not_null(f, "%s: cannot open", path);
	cr_assert(fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0, "%s: cannot size", path);
	p = malloc((size_t)n + 1);	/* +1: never malloc(0) */
	cr_assert_not_null(p);
	cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n, "%s: short read",
	    path);
	fclose(f);
	*size = (size_t)n;
	return p;
}

/*
 * Replays every regular file of CORPUS/<name>/ in name order through fn
 * and returns how many were replayed.
 */
static size_t
replay(const char *name, harness_fn *fn)
{
	char dir[256], **names = NULL;
	size_t n = 0, cap = 0, done = 0, skipped = 0;
	int all = getenv("NBX_FUZZ_REPLAY_ALL") != NULL &&
	    strcmp(getenv("NBX_FUZZ_REPLAY_ALL"), "1") == 0;
	struct dirent *e;
	struct stat sb;
	DIR *d;

	struct sigaction sa;

	if (__sanitizer_set_death_callback != NULL)
		__sanitizer_set_death_callback(say_replaying);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_abort;
	sa.sa_flags = SA_RESETHAND;
	sigaction(SIGABRT, &sa, NULL);
	snprintf(dir, sizeof(dir), "%s/%s", CORPUS, name);
	d = opendir(dir);
	cr_assert_not_null(d, "%s: cannot open (run from the repository root)",
	    dir);
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof(*names));
			cr_assert_not_null(names);
		}
		names[n] = strdup(e->d_name);
		cr_assert_not_null(names[n]);
		n++;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), name_cmp);
	for (size_t i = 0; i < n; i++) {
		size_t size;
		uint8_t *data;

		snprintf(replaying, sizeof(replaying), "%s/%s", dir, names[i]);
		if (stat(replaying, &sb) != 0 || !S_ISREG(sb.st_mode)) {
			free(names[i]);
			continue;
		}
		if (is_artifact(names[i]) && !all) {
			skipped++;
			free(names[i]);
			continue;
		}
		data = read_file(replaying, &size);
		fn(data, size);
		free(data);
		free(names[i]);
		done++;
	}
	replaying[0] = 0;
	free(names);
	if (skipped > 0)
		fprintf(stderr, "fuzz_replay: %s: %zu untriaged finding(s) "
		    "skipped (NBX_FUZZ_REPLAY_ALL=1 replays them)\n", name,
		    skipped);
	return done;
}

TestSuite(fuzz_replay, .fini = fz_teardown);

Test(fuzz_replay, change)
{
	cr_assert_gt(replay("change_fuzz", nbx_fuzz_change), 0);
}

Test(fuzz_replay, frame)
{
	cr_assert_gt(replay("frame_fuzz", nbx_fuzz_frame), 0);
}

Test(fuzz_replay, session)
{
	cr_assert_gt(replay("session_fuzz", nbx_fuzz_session), 0);
}

Test(fuzz_replay, schema)
{
	cr_assert_gt(replay("schema_fuzz", nbx_fuzz_schema), 0);
}

Test(fuzz_replay, config)
{
	cr_assert_gt(replay("config_fuzz", nbx_fuzz_config), 0);
}

Test(fuzz_replay, import)
{
	cr_assert_gt(replay("import_fuzz", nbx_fuzz_import), 0);
}

Test(fuzz_replay, control)
{
	cr_assert_gt(replay("control_fuzz", nbx_fuzz_control), 0);
}

Test(fuzz_replay, jsplit)
{
	cr_assert_gt(replay("jsplit_fuzz", nbx_fuzz_jsplit), 0);
}

Test(fuzz_replay, audit)
{
	cr_assert_gt(replay("audit_fuzz", nbx_fuzz_audit), 0);
}

Test(fuzz_replay, record)
{
	cr_assert_gt(replay("record_fuzz", nbx_fuzz_record), 0);
}

Test(fuzz_replay, recon)
{
	cr_assert_gt(replay("recon_fuzz", nbx_fuzz_recon), 0);
}
