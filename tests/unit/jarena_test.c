/*
 * jarena_test.c - jansson's allocations in arenas (daemon/jarena.c), as
 * nbxd's control socket uses them: a request parsed in an arena on one
 * thread, read and dropped on another, replies built and dumped outside
 * any arena.  Criterion runs each test in a process of its own, so each
 * installs the hooks (or not) before jansson allocates anything.  Under
 * `make asan` LeakSanitizer checks that nothing outlives its arena or
 * its decref.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "jarena.h"

/* A request shaped like an import: n writes of a few fields. */
static char *
request(int n)
{
	size_t cap = 64 + (size_t)n * 160, len = 0;
	char *s = malloc(cap);

	cr_assert_not_null(s);
	len += (size_t)snprintf(s + len, cap - len,
	    "{\"cmd\":\"import\",\"writes\":[");
	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(s + len, cap - len,
		    "%s{\"collection\":\"service\",\"id\":\"ee:svc-%d\","
		    "\"fields\":{\"name\":\"Service %d\",\"capacity\":%d}}",
		    i ? "," : "", i, i, i % 50);
	snprintf(s + len, cap - len, "]}");
	return s;
}

static json_t *
parse_in(struct jarena *a, const char *text)
{
	json_error_t je;
	json_t *t;

	jarena_enter(a);
	t = json_loads(text, 0, &je);
	jarena_leave();
	return t;
}

static void
check_request(json_t *t, int n)
{
	json_t *w = json_object_get(t, "writes");
	char id[32];

	cr_assert(json_is_array(w));
	cr_assert_eq(json_array_size(w), (size_t)n);
	for (int i = 0; i < n; i += 97) {
		json_t *one = json_array_get(w, (size_t)i);

		snprintf(id, sizeof(id), "ee:svc-%d", i);
		cr_assert_str_eq(json_string_value(json_object_get(one, "id")),
		    id);
		cr_assert_eq(json_integer_value(json_object_get(
		    json_object_get(one, "fields"), "capacity")), i % 50);
	}
}

Test(jarena, a_tree_parsed_in_an_arena_lives_in_it_until_dropped)
{
	struct jarena *a;
	char *text = request(2000);
	json_t *t;
	size_t held;

	jarena_install();
	cr_assert_not_null(a = jarena_new());
	cr_assert_eq(jarena_size(a), 0);
	cr_assert_not_null(t = parse_in(a, text));
	held = jarena_size(a);
	cr_assert_gt(held, strlen(text), "the tree is in the arena (%zu B)",
	    held);
	/* jansson's own frees of arena values change nothing */
	json_incref(t);
	json_decref(t);
	json_object_del(t, "cmd");
	check_request(t, 2000);
	cr_assert_eq(jarena_size(a), held);
	jarena_drop_tree(a, t);
	free(text);
}

Test(jarena, allocations_outside_an_arena_are_malloc_and_freed)
{
	struct jarena *a;
	json_t *t, *reply;
	char *s;

	jarena_install();
	cr_assert_not_null(a = jarena_new());
	cr_assert_not_null(t = parse_in(a, "{\"cmd\":\"status\",\"x\":[1,2]}"));
	/* a reply built from the request's strings, outside the arena */
	reply = json_pack("{s:b, s:s}", "ok", 1, "cmd",
	    json_string_value(json_object_get(t, "cmd")));
	cr_assert_not_null(reply);
	cr_assert_eq(jarena_size(a) > 0, 1);
	jarena_drop_tree(a, t);		/* the reply holds nothing of it */
	s = json_dumps(reply, JSON_COMPACT);
	json_decref(reply);
	cr_assert_str_eq(s, "{\"ok\":true,\"cmd\":\"status\"}");
	jarena_json_free(s);
}

Test(jarena, a_value_larger_than_a_chunk_fits)
{
	size_t n = 1u << 20;
	char *text = malloc(n + 3);
	struct jarena *a;
	json_t *t;

	jarena_install();
	cr_assert_not_null(text);
	text[0] = '"';
	memset(text + 1, 'x', n);
	text[n + 1] = '"';
	text[n + 2] = '\0';
	cr_assert_not_null(a = jarena_new());
	jarena_enter(a);
	t = json_loads(text, JSON_DECODE_ANY, NULL);
	jarena_leave();
	cr_assert_not_null(t);
	cr_assert_eq(json_string_length(t), n);
	cr_assert_geq(jarena_size(a), n);
	jarena_drop_tree(a, t);
	free(text);
}

Test(jarena, a_failed_parse_leaves_nothing_behind)
{
	struct jarena *a;

	jarena_install();
	cr_assert_not_null(a = jarena_new());
	cr_assert_null(parse_in(a, "{\"writes\":[{\"id\":\"x\"},{\"id\":"));
	jarena_drop_tree(a, NULL);
}

struct parse_job {
	struct jarena *a;
	const char *text;
	json_t *t;
};

static void *
parse_thread(void *arg)
{
	struct parse_job *j = arg;

	j->t = parse_in(j->a, j->text);
	/* the thread's later allocations are malloc's again */
	json_decref(json_pack("{s:s}", "after", "leave"));
	return NULL;
}

Test(jarena, parsed_on_one_thread_read_and_dropped_on_another)
{
	struct parse_job j[4];
	pthread_t th[4];
	char *text = request(500);

	jarena_install();
	for (int i = 0; i < 4; i++) {
		j[i].text = text;
		cr_assert_not_null(j[i].a = jarena_new());
		cr_assert_eq(pthread_create(&th[i], NULL, parse_thread, &j[i]),
		    0);
	}
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(pthread_join(th[i], NULL), 0);
		cr_assert_not_null(j[i].t);
		check_request(j[i].t, 500);
		jarena_drop_tree(j[i].a, j[i].t);
	}
	free(text);
}

Test(jarena, without_install_the_tree_is_malloc_and_decrefd)
{
	struct jarena *a;
	json_t *t;
	char *s;

	cr_assert_not_null(a = jarena_new());
	cr_assert_not_null(t = parse_in(a, "{\"cmd\":\"status\"}"));
	cr_assert_eq(jarena_size(a), 0, "the arena is not used");
	s = json_dumps(t, JSON_COMPACT);
	cr_assert_str_eq(s, "{\"cmd\":\"status\"}");
	jarena_json_free(s);
	jarena_drop_tree(a, t);		/* LeakSanitizer: the tree is freed */
}

Test(jarena, a_tree_parsed_outside_any_arena_is_decrefd)
{
	json_t *t;

	jarena_install();
	cr_assert_not_null(t = json_loads("{\"a\":[1,2,3]}", 0, NULL));
	jarena_drop_tree(NULL, t);	/* LeakSanitizer: the tree is freed */
}
