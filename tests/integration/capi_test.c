/* The C ABI's corners against a live mesh with one worker (install_test.sh builds this against
 * the installed package): JSON and struct worker lists, the client id, a bad request, a topic
 * without workers, cancel, qmesh_client_free with a stream still running, NULL arguments.
 *   usage: capi_test HOST:PORT        prints ok:/FAIL: lines; exit 1 on any failure */
#include <qmesh/client.h>

#include <stdio.h>
#include <string.h>

static int failures = 0;

static void check(int cond, const char* what) {
  printf("%s: %s\n", cond ? "ok" : "FAIL", what);
  if (!cond) {
    printf("  last error: %s\n", qmesh_last_error());
    ++failures;
  }
}

static qmesh_client* connect_to(const char* bootstrap, const char* topic) {
  qmesh_options* o = qmesh_options_new();
  qmesh_client* c = NULL;
  qmesh_options_add_bootstrap(o, bootstrap);
  if (topic) qmesh_options_set_topic(o, topic);
  if (qmesh_client_new(o, &c) != QMESH_OK) printf("client: %s\n", qmesh_last_error());
  qmesh_options_free(o);
  return c;
}

int main(int argc, char** argv) {
  qmesh_client* c;
  qmesh_client* other;
  qmesh_ask_options a;
  qmesh_result r;
  qmesh_stream* st = NULL;
  qmesh_worker* ws = NULL;
  size_t n = 0, len = 0;
  char* json = NULL;
  char id[65];
  const char* piece = NULL;
  qmesh_status s;

  if (argc != 2) {
    fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
    return 2;
  }
  check(strcmp(qmesh_status_name(QMESH_ERR_NO_WORKERS), "no_workers") == 0, "qmesh_status_name");
  check(qmesh_version()[0] != '\0', "qmesh_version");
  check(qmesh_client_new(NULL, NULL) == QMESH_ERR_INVALID_ARGUMENT && qmesh_last_error()[0] != '\0',
        "NULL out: QMESH_ERR_INVALID_ARGUMENT with a message");

  c = connect_to(argv[1], NULL);
  check(c != NULL, "client joins");
  if (!c) return 1;
  check(qmesh_client_id(c, id, sizeof id) == 64 && strlen(id) == 64, "client id is 64 hex digits");

  check(qmesh_workers(c, &ws, &n) == QMESH_OK && n == 1 && ws[0].available && ws[0].slots_total > 0 &&
            strlen(ws[0].id) == 64,
        "qmesh_workers: one available worker");
  qmesh_workers_free(ws, n);
  check(qmesh_workers_json(c, &json) == QMESH_OK && json && json[0] == '[' && strstr(json, "\"available\":true"),
        "qmesh_workers_json: an array with the worker");
  qmesh_string_free(json);

  qmesh_ask_options_init(&a);
  a.prompt = "hello";
  a.max_tokens = 0;
  s = qmesh_ask(c, &a, NULL, NULL, &r);
  check(s == QMESH_ERR_BAD_REQUEST && strstr(qmesh_last_error(), "max_tokens") && r.text == NULL,
        "max_tokens 0: QMESH_ERR_BAD_REQUEST naming max_tokens, result zeroed");
  qmesh_result_clear(&r);

  a.max_tokens = 8;
  a.prompt = "ab\xff";
  s = qmesh_ask(c, &a, NULL, NULL, &r);
  check(s == QMESH_ERR_BAD_REQUEST && strstr(qmesh_last_error(), "not valid UTF-8 (byte offset 2)") && r.text == NULL,
        "a prompt that is not UTF-8: QMESH_ERR_BAD_REQUEST naming the byte offset");
  qmesh_result_clear(&r);

  a.prompt = "hello";
  s = qmesh_ask(c, &a, NULL, NULL, &r);
  check(s == QMESH_OK && r.tokens > 0 && r.text && strlen(r.text) == r.text_len && strlen(r.worker) == 64,
        "blocking ask without a callback fills the result");
  qmesh_result_clear(&r);
  check(r.text == NULL && r.tokens == 0, "qmesh_result_clear zeroes");

  /* Cancelled at once: the ask ends with QMESH_ERR_CANCELLED, the stream reports its end. */
  a.max_tokens = 200;
  check(qmesh_ask_start(c, &a, &st) == QMESH_OK && st, "qmesh_ask_start");
  qmesh_stream_cancel(st);
  while (qmesh_stream_next(st, &piece, &len) == QMESH_OK && piece) {
  }
  check(piece == NULL && len == 0, "a cancelled stream ends");
  check(qmesh_stream_finish(st, &r) == QMESH_ERR_CANCELLED, "a cancelled ask: QMESH_ERR_CANCELLED");
  qmesh_stream_free(st);

  /* A topic nobody serves. */
  other = connect_to(argv[1], "qmesh-capi-test-nobody");
  check(other != NULL, "second client joins");
  if (other) {
    s = qmesh_ask(other, &a, NULL, NULL, NULL);
    check(s == QMESH_ERR_NO_WORKERS, "a topic without workers: QMESH_ERR_NO_WORKERS");
    qmesh_client_free(other);
  }

  /* Freeing the client with a stream still running cancels it; the handle stays usable. */
  check(qmesh_ask_start(c, &a, &st) == QMESH_OK, "qmesh_ask_start before qmesh_client_free");
  qmesh_client_free(c);
  check(qmesh_stream_finish(st, NULL) == QMESH_ERR_CANCELLED, "qmesh_client_free cancels a running stream");
  qmesh_stream_free(st);

  check(qmesh_stream_next(NULL, &piece, &len) == QMESH_ERR_INVALID_ARGUMENT, "NULL stream: QMESH_ERR_INVALID_ARGUMENT");
  qmesh_stream_free(NULL);
  qmesh_client_free(NULL);
  return failures ? 1 : 0;
}
