/* libqmesh-client, C ABI: ask the QMesh peer-to-peer network for a completion.
 *
 *   qmesh_options* o = qmesh_options_new();
 *   qmesh_options_add_bootstrap(o, "203.0.113.7:49737");
 *   qmesh_client* c = NULL;
 *   if (qmesh_client_new(o, &c) != QMESH_OK) { fprintf(stderr, "%s\n", qmesh_last_error()); ... }
 *   qmesh_options_free(o);
 *
 *   qmesh_ask_options ask;
 *   qmesh_ask_options_init(&ask);
 *   ask.prompt = "Why is the sky blue?";
 *   qmesh_result r;
 *   qmesh_status s = qmesh_ask(c, &ask, print_piece, NULL, &r);   (see qmesh_token_fn)
 *   ... r.text, r.tokens, r.ttft_ms ...
 *   qmesh_result_clear(&r);
 *   qmesh_client_free(c);
 *
 * Or pull style, cancellable from any thread: qmesh_ask_start gives a qmesh_stream; read it with
 * qmesh_stream_next, stop it with qmesh_stream_cancel, end with qmesh_stream_finish and
 * qmesh_stream_free.
 *
 * A thin layer over the C++ API (qmesh/client.hpp); the same semantics: a client joins the DHT
 * (one background thread per client), picks a healthy worker, streams the answer over an
 * end-to-end encrypted session and fails over to another worker without the caller noticing.
 *
 * Conventions
 *   - Every function that can fail returns a qmesh_status. On failure, qmesh_last_error() returns
 *     a one-line message for the calling thread's most recent failed call.
 *   - Handles (qmesh_options, qmesh_client, qmesh_stream) are opaque and owned by the caller, who
 *     frees each with its _free function. Strings the library returns are owned as documented at
 *     each function. Strings passed in are copied; the caller keeps ownership.
 *   - All strings are UTF-8 and NUL-terminated, except token pieces, which come with a length.
 *   - No C++ exception ever leaves these functions.
 *   - A qmesh_client may be used from several threads at once; a qmesh_stream from one thread at a
 *     time, except qmesh_stream_cancel, which any thread may call.
 *   - Link with -lqmesh-client (pkg-config qmesh-client, or CMake's qmesh::client).
 */
#ifndef QMESH_CLIENT_H
#define QMESH_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ---- */

typedef enum qmesh_status {
  QMESH_OK = 0,
  QMESH_ERR_NO_WORKERS = 1,       /* no (ready) worker announces the topic / serves the model
                                     (C++ kinds no_workers and unknown_model) */
  QMESH_ERR_BUSY = 2,             /* every worker is busy; retry later */
  QMESH_ERR_TIMEOUT = 3,          /* no answer (or lookup, or session) in time */
  QMESH_ERR_BAD_REQUEST = 4,      /* the ask itself is invalid (max_tokens, temperature, ...) */
  QMESH_ERR_CANCELLED = 5,        /* qmesh_stream_cancel, or the client is closing */
  QMESH_ERR_NETWORK = 6,          /* no DHT node answered, workers unreachable or lost
                                     (C++ kinds network and workers_failed) */
  QMESH_ERR_CONFIG = 7,           /* bad client options, config file or identity file */
  QMESH_ERR_INVALID_ARGUMENT = 8, /* API misuse: a NULL handle or pointer where one is needed */
  QMESH_ERR_NO_MEMORY = 9,
  QMESH_ERR_INTERNAL = 10         /* anything else (a bug: please report the message) */
} qmesh_status;

/* A static, lowercase name for a status ("ok", "no_workers", "busy", "timeout", "bad_request",
 * "cancelled", "network", "config", "invalid_argument", "no_memory", "internal"; "unknown" for
 * other values). Never NULL; do not free. */
const char* qmesh_status_name(qmesh_status status);

/* The message of the calling thread's most recent failed call ("" if none). Owned by the library;
 * valid until the next qmesh_* call on this thread. */
const char* qmesh_last_error(void);

/* The library's version, e.g. "0.1.0". Static; do not free. */
const char* qmesh_version(void);

/* ---- client options ---- */

typedef struct qmesh_options qmesh_options;

/* Defaults: bootstrap from the config file (~/.config/qmesh/config.json), topic
 * "qmesh-inference", a fresh identity, any listen address, hole punching on, 10 s join timeout.
 * Returns NULL only when out of memory. Free with qmesh_options_free. */
qmesh_options* qmesh_options_new(void);
void qmesh_options_free(qmesh_options* options); /* NULL is fine */

/* "HOST:PORT" of a DHT node (HOST: an IPv4 address, [IPv6] or a DNS name, resolved by
 * qmesh_client_new); call again to add more. */
qmesh_status qmesh_options_add_bootstrap(qmesh_options* options, const char* host_port);
qmesh_status qmesh_options_set_topic(qmesh_options* options, const char* topic);
/* Key file of a long-term identity (created if missing); NULL or "": a fresh key per client. */
qmesh_status qmesh_options_set_identity(qmesh_options* options, const char* path);
/* "HOST[:PORT]" of the client's UDP socket; NULL or "": any. */
qmesh_status qmesh_options_set_listen(qmesh_options* options, const char* host_port);
/* Non-zero (the default): try a direct path to workers; zero: stay on the relay. */
qmesh_status qmesh_options_set_punch(qmesh_options* options, int punch);
qmesh_status qmesh_options_set_join_timeout_ms(qmesh_options* options, uint32_t ms);

/* ---- client ---- */

typedef struct qmesh_client qmesh_client;

/* Joins the network (blocks up to the join timeout). options may be NULL (defaults) and may be
 * freed right after. On success *out is a new client, freed with qmesh_client_free; on failure
 * *out is NULL: QMESH_ERR_CONFIG (bad options), QMESH_ERR_NETWORK (no DHT node answered). */
qmesh_status qmesh_client_new(const qmesh_options* options, qmesh_client** out);

/* Cancels the client's unfinished qmesh_stream handles, waits for their threads, closes the
 * sessions and stops the network thread. The qmesh_stream handles stay valid (they end with
 * QMESH_ERR_CANCELLED) and must still be freed. NULL is fine. No other call on this client may be
 * running (in another thread, or a token callback of it) when it is called. */
void qmesh_client_free(qmesh_client* client);

/* This client's public key as hex, written into buf (NUL-terminated, truncated to size). Returns
 * the full length (64), like snprintf. */
size_t qmesh_client_id(const qmesh_client* client, char* buf, size_t size);

/* ---- workers ---- */

typedef struct qmesh_worker {
  const char* id;       /* the worker's public key (hex) */
  const char* endpoint; /* where it announced from, as the DHT saw it */
  int available;        /* non-zero: taking asks */
  const char* model;
  const char* model_hash;
  const char* architecture;
  const char* quantization;
  uint64_t parameters;
  uint32_t context; /* tokens per slot */
  int slots_total, slots_busy, queue_length, queue_capacity;
  double cpu, memory; /* busy / used share, 0..1 */
  double prompt_tokens_per_second, generation_tokens_per_second;
  uint32_t max_tokens;
  const char* software;
  const char* nat;
  int expires_in_s; /* the record's remaining lifetime */
  double score;     /* the selection score (0: not eligible now) */
} qmesh_worker;

/* Looks up the live workers of the client's topic, best score first. On success *out is an array
 * of *count workers (NULL when *count is 0), all strings inside owned by the array: free it with
 * qmesh_workers_free(*out, *count). */
qmesh_status qmesh_workers(qmesh_client* client, qmesh_worker** out, size_t* count);
void qmesh_workers_free(qmesh_worker* workers, size_t count); /* NULL is fine */

/* The same list as a JSON array of objects with the qmesh_worker field names (handy for bindings).
 * *json is a new string: free it with qmesh_string_free. */
qmesh_status qmesh_workers_json(qmesh_client* client, char** json);
void qmesh_string_free(char* s); /* NULL is fine */

/* ---- asking ---- */

typedef struct qmesh_message {
  const char* role; /* "system", "user", "assistant" */
  const char* content;
} qmesh_message;

/* top_p, stop strings, and the prompt's token count and model of the result are in the C++ API
 * only (qmesh/client.hpp): these structs carry no size or version field, so they cannot grow
 * without breaking programs built against an older header.
 *
 * Fill with qmesh_ask_options_init, then set what you need. The strings and the messages array
 * are only read during qmesh_ask / qmesh_ask_start (copied); NULL strings count as "". */
typedef struct qmesh_ask_options {
  const char* prompt;             /* chat: the user message; raw: the text to continue */
  const qmesh_message* messages;  /* a whole conversation (instead of prompt), or NULL */
  size_t messages_count;
  const char* system;             /* chat: a system message first */
  int raw;                        /* non-zero: plain completion, no chat template */
  const char* model;              /* a model name or hash prefix; NULL or "": any */
  int max_tokens;                 /* default 256 */
  double temperature;             /* negative (the default): the worker's default */
  int has_seed;                   /* non-zero: use seed */
  uint64_t seed;
  uint32_t timeout_ms;            /* the whole ask; default 300000 */
  int max_attempts;               /* workers tried before giving up; default 5 */
} qmesh_ask_options;

void qmesh_ask_options_init(qmesh_ask_options* options);

/* The outcome of an ask. Filled by the library; the strings are owned by the struct until
 * qmesh_result_clear, which frees them and zeroes the struct. */
typedef struct qmesh_result {
  char* text;        /* the whole answer, NUL-terminated */
  size_t text_len;   /* its length in bytes */
  char* worker;      /* hex id of the worker that finished the answer */
  char* stop_reason; /* "eos", "limit", ... */
  uint64_t tokens;
  double ttft_ms;           /* ask started -> first token */
  double total_ms;          /* ask started -> done */
  double tokens_per_second; /* after the first token */
  int retries;              /* times the ask moved to another worker */
  int resumed;              /* non-zero: a worker was lost mid-answer and another continued */
} qmesh_result;

void qmesh_result_clear(qmesh_result* result); /* NULL is fine */

/* Called with each piece of the answer as it arrives, on the thread that called qmesh_ask. piece
 * is not NUL-terminated and only valid during the call. */
typedef void (*qmesh_token_fn)(const char* piece, size_t len, void* user);

/* Asks and blocks until the answer is complete. on_token may be NULL. result may be NULL; else it
 * is filled on QMESH_OK and zeroed on failure (so qmesh_result_clear is always safe). */
qmesh_status qmesh_ask(qmesh_client* client, const qmesh_ask_options* options, qmesh_token_fn on_token, void* user,
                       qmesh_result* result);

/* ---- asking, pull style (cancellable): start an ask, read its stream ---- */

typedef struct qmesh_stream qmesh_stream;

/* Starts an ask on a background thread. On success *out is a new handle, freed with
 * qmesh_stream_free (also after qmesh_client_free). */
qmesh_status qmesh_ask_start(qmesh_client* client, const qmesh_ask_options* options, qmesh_stream** out);

/* Blocks until the next piece of the answer or its end. A piece: returns QMESH_OK with *piece and
 * *len set (*piece is owned by the handle, valid until the next call on the handle, and not
 * NUL-terminated). The end: returns QMESH_OK with *piece = NULL and *len = 0; then call
 * qmesh_stream_finish for the outcome. */
qmesh_status qmesh_stream_next(qmesh_stream* stream, const char** piece, size_t* len);

/* Ends the ask early, from any thread; it then ends with QMESH_ERR_CANCELLED (unless it had
 * already ended). Does not block. */
void qmesh_stream_cancel(qmesh_stream* stream);

/* Waits for the ask to end and returns its outcome; on QMESH_OK fills result (may be NULL) as
 * qmesh_ask does. Pieces not read by qmesh_stream_next are still in result->text. */
qmesh_status qmesh_stream_finish(qmesh_stream* stream, qmesh_result* result);

/* Cancels the ask if it is still running and frees the handle. NULL is fine. */
void qmesh_stream_free(qmesh_stream* stream);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* QMESH_CLIENT_H */
