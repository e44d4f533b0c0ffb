/*
 * fetchn: N simultaneous downloads of one URL, for tests/bench (client.mjs runs it). Each client is
 * a thread with its own connection (`Connection: close`); all of them send their request at one
 * shared instant, and every time is measured from that instant.
 *
 *   fetchn -n CLIENTS [-s HASHED] [-m GET|HEAD] [-T TIMEOUT_S] [-H 'Name: value']... http://HOST:PORT/PATH
 *
 * Prints one JSON line per client, in order: index, status, content_length (null if absent), bytes,
 * headers_ms, ttfb_ms, total_ms, sha256 (null unless hashed) and error (null when the body was
 * complete). Also the response's X-Cache, if any, as x_cache. IPv4 literal hosts only.
 *
 * Why a C client: the benchmark runs the clients on the proxies' own cores. Receiving 32 GiB into a
 * JavaScript process costs about as much CPU as sending it, so a crowd measured with it says more about
 * the client than about the proxy. Bodies are counted and discarded inside the kernel (recv with
 * MSG_TRUNC, no copy to user space), as a client on another machine would cost the proxy's host
 * nothing. The first HASHED clients instead read every byte and compute its sha256 (OpenSSL), which
 * checks what the proxy delivered.
 *
 * Build: cc -O2 -pthread -o fetchn fetchn.c -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define HEAD_LIMIT 65536
#define READ_SIZE (1 << 20)

typedef struct {
  int index, hashed;
  int status;
  long long content_length; /* -1 when absent */
  long long bytes;
  double headers_ms, ttfb_ms, total_ms;
  char sha256[65];
  char x_cache[64];
  const char *error;
} client_t;

static struct sockaddr_in g_addr;
static char g_req[8192];
static size_t g_reqlen;
static int g_head;
static int g_timeout_s = 600;
static pthread_barrier_t g_start;
static struct timespec g_t0;

static double ms_since_start(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - g_t0.tv_sec) * 1e3 + (double)(t.tv_nsec - g_t0.tv_nsec) / 1e6;
}

/* Case-insensitive search for header `name` in the head; copies its value (trimmed) into out. */
static int header_value(const char *head, const char *name, char *out, size_t cap) {
  size_t nl = strlen(name);
  for (const char *p = strstr(head, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
    const char *line = p + 2;
    if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
      const char *v = line + nl + 1;
      while (*v == ' ' || *v == '\t') v++;
      const char *e = strstr(v, "\r\n");
      size_t len = (size_t)(e - v);
      while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t')) len--;
      if (len >= cap) len = cap - 1;
      memcpy(out, v, len);
      out[len] = 0;
      return 1;
    }
  }
  return 0;
}

static void *run_client(void *arg) {
  client_t *c = arg;
  char *buf = malloc(READ_SIZE);
  EVP_MD_CTX *md = c->hashed ? EVP_MD_CTX_new() : NULL;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (!buf || fd < 0) {
    c->error = "out of resources";
    pthread_barrier_wait(&g_start);
    goto out;
  }
  if (md) EVP_DigestInit_ex(md, EVP_sha256(), NULL);
  struct timeval tv = {.tv_sec = g_timeout_s};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  pthread_barrier_wait(&g_start);
  if (connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr) != 0) {
    c->error = "connect failed";
    goto out;
  }
  for (size_t sent = 0; sent < g_reqlen;) {
    ssize_t k = send(fd, g_req + sent, g_reqlen - sent, MSG_NOSIGNAL);
    if (k <= 0) {
      c->error = "send failed";
      goto out;
    }
    sent += (size_t)k;
  }
  /* The head, and whatever body bytes came with it. */
  size_t hlen = 0;
  char *end = NULL;
  while (!end) {
    if (hlen >= HEAD_LIMIT) {
      c->error = "response headers too large";
      goto out;
    }
    ssize_t k = recv(fd, buf + hlen, HEAD_LIMIT - hlen, 0);
    if (k <= 0) {
      c->error = k == 0 ? "connection closed early" : (errno == EAGAIN ? "timeout" : "read failed");
      goto out;
    }
    hlen += (size_t)k;
    buf[hlen] = 0;
    end = strstr(buf, "\r\n\r\n");
  }
  c->headers_ms = ms_since_start();
  end[2] = 0; /* keep the last header's CRLF for header_value */
  if (sscanf(buf, "HTTP/1.%*d %d", &c->status) != 1) {
    c->error = "bad status line";
    goto out;
  }
  char value[64];
  if (header_value(buf, "Transfer-Encoding", value, sizeof value)) {
    c->error = "chunked bodies are not supported";
    goto out;
  }
  if (header_value(buf, "Content-Length", value, sizeof value)) c->content_length = atoll(value);
  header_value(buf, "X-Cache", c->x_cache, sizeof c->x_cache);
  for (char *p = c->x_cache; *p; p++)
    if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) *p = '?'; /* printed as a JSON string */
  if (g_head || c->status == 204 || c->status == 304) c->content_length = 0;
  size_t rest = hlen - (size_t)(end + 4 - buf);
  long long want = c->content_length;
  if (want >= 0 && (long long)rest > want) rest = (size_t)want; /* never count bytes past the length */
  if (rest > 0) {
    c->ttfb_ms = c->headers_ms;
    c->bytes = (long long)rest;
    if (md) EVP_DigestUpdate(md, end + 4, rest);
  } else if (want == 0) {
    c->ttfb_ms = c->headers_ms;
  }
  while (want < 0 || c->bytes < want) {
    size_t ask = READ_SIZE;
    if (want >= 0 && (long long)ask > want - c->bytes) ask = (size_t)(want - c->bytes);
    ssize_t k = recv(fd, buf, ask, md ? 0 : MSG_TRUNC);
    if (k == 0) {
      if (want >= 0) c->error = "connection closed early";
      break;
    }
    if (k < 0) {
      if (errno == EINTR) continue;
      c->error = errno == EAGAIN ? "timeout" : "read failed";
      break;
    }
    if (c->ttfb_ms < 0) c->ttfb_ms = ms_since_start();
    if (md) EVP_DigestUpdate(md, buf, (size_t)k);
    c->bytes += k;
  }
  if (md && !c->error) {
    unsigned char d[32];
    EVP_DigestFinal_ex(md, d, NULL);
    for (int i = 0; i < 32; i++) sprintf(c->sha256 + 2 * i, "%02x", d[i]);
  }
out:
  c->total_ms = ms_since_start();
  if (fd >= 0) close(fd);
  if (md) EVP_MD_CTX_free(md);
  free(buf);
  return NULL;
}

static void usage(void) {
  fprintf(stderr, "usage: fetchn -n CLIENTS [-s HASHED] [-m GET|HEAD] [-T TIMEOUT_S] [-H 'Name: value']... http://IPV4:PORT/PATH\n");
  exit(2);
}

int main(int argc, char **argv) {
  int n = 1, hashed = 0;
  const char *method = "GET";
  char extra[4096] = "";
  int opt;
  while ((opt = getopt(argc, argv, "n:s:m:T:H:")) != -1) {
    switch (opt) {
      case 'n': n = atoi(optarg); break;
      case 's': hashed = atoi(optarg); break;
      case 'm': method = optarg; break;
      case 'T': g_timeout_s = atoi(optarg); break;
      case 'H':
        if (strlen(extra) + strlen(optarg) + 3 >= sizeof extra) usage();
        strcat(extra, optarg);
        strcat(extra, "\r\n");
        break;
      default: usage();
    }
  }
  if (optind != argc - 1 || n < 1 || n > 4096 || g_timeout_s < 1) usage();
  const char *url = argv[optind];
  if (strncmp(url, "http://", 7) != 0) usage();
  const char *hostport = url + 7;
  const char *path = strchr(hostport, '/');
  if (!path) path = "/";
  char host[256];
  size_t hl = (size_t)(strchr(hostport, '/') ? strchr(hostport, '/') - hostport : (long)strlen(hostport));
  if (hl >= sizeof host) usage();
  memcpy(host, hostport, hl);
  host[hl] = 0;
  char *colon = strchr(host, ':');
  g_addr.sin_family = AF_INET;
  g_addr.sin_port = htons(colon ? (uint16_t)atoi(colon + 1) : 80);
  if (colon) *colon = 0;
  if (inet_pton(AF_INET, host, &g_addr.sin_addr) != 1) usage();
  if (colon) *colon = ':';
  g_head = strcasecmp(method, "HEAD") == 0;
  g_reqlen = (size_t)snprintf(g_req, sizeof g_req,
                              "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hubcache-bench/1\r\nAccept: */*\r\n"
                              "Accept-Encoding: identity\r\nConnection: close\r\n%s\r\n",
                              method, path, host, extra);
  if (g_reqlen >= sizeof g_req) usage();

  client_t *clients = calloc((size_t)n, sizeof *clients);
  pthread_t *threads = calloc((size_t)n, sizeof *threads);
  pthread_barrier_init(&g_start, NULL, (unsigned)n + 1);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  for (int i = 0; i < n; i++) {
    clients[i] = (client_t){.index = i, .hashed = i < hashed, .content_length = -1, .ttfb_ms = -1, .headers_ms = -1};
    if (pthread_create(&threads[i], &attr, run_client, &clients[i]) != 0) {
      fprintf(stderr, "fetchn: cannot start thread %d\n", i);
      return 1;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &g_t0);
  pthread_barrier_wait(&g_start); /* every client is ready: go */
  for (int i = 0; i < n; i++) pthread_join(threads[i], NULL);

  for (int i = 0; i < n; i++) {
    const client_t *c = &clients[i];
    printf("{\"index\":%d,\"status\":%d,\"content_length\":", c->index, c->status);
    if (c->content_length >= 0) printf("%lld", c->content_length); else printf("null");
    printf(",\"bytes\":%lld,\"headers_ms\":", c->bytes);
    if (c->headers_ms >= 0) printf("%.3f", c->headers_ms); else printf("null");
    printf(",\"ttfb_ms\":");
    if (c->ttfb_ms >= 0) printf("%.3f", c->ttfb_ms); else printf("null");
    printf(",\"total_ms\":%.3f,\"sha256\":", c->total_ms);
    if (c->sha256[0]) printf("\"%s\"", c->sha256); else printf("null");
    printf(",\"x_cache\":");
    if (c->x_cache[0]) printf("\"%s\"", c->x_cache); else printf("null");
    printf(",\"error\":");
    if (c->error) printf("\"%s\"}\n", c->error); else printf("null}\n");
  }
  return 0;
}
