/* Asks the QMesh network through the C ABI (qmesh/client.h): lists the workers, streams the
 * answer to stdout, prints the stats to stderr.
 *   usage: ask_c [-b HOST:PORT]... [-n MAX_TOKENS] [--pull] PROMPT
 * Without -b: the comma-separated $QMESH_BOOTSTRAP, else the config file's "bootstrap" list.
 * --pull reads the answer with qmesh_ask_start / qmesh_stream_next / qmesh_stream_finish instead of a
 * token callback. On failure it prints "error: <status name> (<code>): <message>" and exits 1. */
#include <qmesh/client.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_piece(const char* piece, size_t len, void* user) {
  (void)user;
  fwrite(piece, 1, len, stdout);
  fflush(stdout);
}

static int failed(qmesh_status s) {
  fprintf(stderr, "error: %s (%d): %s\n", qmesh_status_name(s), (int)s, qmesh_last_error());
  return 1;
}

static void usage(const char* self) {
  fprintf(stderr, "usage: %s [-b HOST:PORT]... [-n MAX_TOKENS] [--pull] PROMPT\n", self);
}

int main(int argc, char** argv) {
  qmesh_options* options = qmesh_options_new();
  qmesh_client* client = NULL;
  qmesh_ask_options ask;
  qmesh_result result;
  qmesh_worker* workers = NULL;
  size_t n_workers = 0, i;
  int pull = 0, n_bootstrap = 0;
  qmesh_status s;

  if (!options) return failed(QMESH_ERR_NO_MEMORY);
  qmesh_ask_options_init(&ask);
  for (i = 1; i < (size_t)argc; ++i) {
    if (strcmp(argv[i], "-b") == 0 && i + 1 < (size_t)argc) {
      qmesh_options_add_bootstrap(options, argv[++i]);
      ++n_bootstrap;
    } else if (strcmp(argv[i], "-n") == 0 && i + 1 < (size_t)argc) {
      ask.max_tokens = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--pull") == 0) {
      pull = 1;
    } else if (!ask.prompt && argv[i][0] != '-') {
      ask.prompt = argv[i];
    } else {
      usage(argv[0]);
      return 2;
    }
  }
  if (!ask.prompt) {
    usage(argv[0]);
    return 2;
  }
  if (n_bootstrap == 0 && getenv("QMESH_BOOTSTRAP")) {
    char* list = malloc(strlen(getenv("QMESH_BOOTSTRAP")) + 1);
    char* b;
    if (!list) return failed(QMESH_ERR_NO_MEMORY);
    strcpy(list, getenv("QMESH_BOOTSTRAP"));
    for (b = strtok(list, ","); b; b = strtok(NULL, ",")) qmesh_options_add_bootstrap(options, b);
    free(list);
  }

  s = qmesh_client_new(options, &client);
  qmesh_options_free(options);
  if (s != QMESH_OK) return failed(s);

  s = qmesh_workers(client, &workers, &n_workers);
  if (s != QMESH_OK) {
    qmesh_client_free(client);
    return failed(s);
  }
  fprintf(stderr, "%u worker(s)\n", (unsigned)n_workers);
  for (i = 0; i < n_workers; ++i)
    fprintf(stderr, "  %.16s  %s  slots %d/%d  score %.3f\n", workers[i].id, workers[i].model, workers[i].slots_busy,
            workers[i].slots_total, workers[i].score);
  qmesh_workers_free(workers, n_workers);

  if (!pull) {
    s = qmesh_ask(client, &ask, print_piece, NULL, &result);
  } else {
    qmesh_stream* a = NULL;
    s = qmesh_ask_start(client, &ask, &a);
    if (s == QMESH_OK) {
      const char* piece;
      size_t len;
      while (qmesh_stream_next(a, &piece, &len) == QMESH_OK && piece) print_piece(piece, len, NULL);
      s = qmesh_stream_finish(a, &result);
      qmesh_stream_free(a);
    }
  }
  if (s != QMESH_OK) {
    failed(s);
    qmesh_client_free(client);
    return 1;
  }
  printf("\n");
  fprintf(stderr, "worker %.16s: %llu tokens, first after %.0f ms, %.1f tokens/s, %.0f ms in all, %d retries%s\n",
          result.worker, (unsigned long long)result.tokens, result.ttft_ms, result.tokens_per_second, result.total_ms,
          result.retries, result.resumed ? " (resumed)" : "");
  qmesh_result_clear(&result);
  qmesh_client_free(client);
  return 0;
}
