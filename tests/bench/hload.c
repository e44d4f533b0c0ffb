/*
 * hload: a small closed-loop HTTP/1.1 load generator for HEAD (and GET) requests on keep-alive
 * connections, for tests/bench/run.sh. Debian's wrk 4.1.0 cannot do HEAD: its parser waits for
 * the Content-Length body that a HEAD response never has, so every connection stalls after one
 * request. hload reads the headers, then the Content-Length body unless the method is HEAD.
 *
 *   hload -t THREADS -c CONNECTIONS -d SECONDS [-m HEAD|GET] [-T TIMEOUT_S] http://HOST:PORT/PATH
 *
 * Prints one JSON line: requests, duration_s, rps, non2xx, errors (connect/read/timeout/parse),
 * reconnects, latency percentiles in microseconds (p50 p90 p99 p999 max). IPv4 literal hosts only.
 * Build: cc -O2 -pthread -o hload hload.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536
#define HBUCKETS 4096 /* log-linear histogram: 64 sub-buckets per power of two, in microseconds */

typedef struct {
  int fd;
  int state; /* 0 connecting, 1 writing, 2 reading headers, 3 reading body */
  size_t wrote;
  char hdr[16384];
  size_t hlen;
  long long body_left;
  uint64_t t_start;
} conn_t;

typedef struct {
  int id, nconn;
  conn_t *conns;
  uint64_t requests, non2xx, errors, reconnects;
  uint64_t hist[HBUCKETS];
} worker_t;

static struct sockaddr_in g_addr;
static char g_req[4096];
static size_t g_reqlen;
static int g_head;
static uint64_t g_deadline_ns, g_timeout_ns;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int bucket_of(uint64_t us) {
  if (us < 64) return (int)us;
  int e = 63 - __builtin_clzll(us); /* >= 6 */
  int sub = (int)((us >> (e - 6)) & 63);
  int b = (e - 5) * 64 + sub;
  return b < HBUCKETS ? b : HBUCKETS - 1;
}
static uint64_t bucket_value(int b) {
  if (b < 64) return (uint64_t)b;
  int e = b / 64 + 5;
  uint64_t sub = (uint64_t)(b % 64);
  return ((64 + sub) << (e - 6)) + ((1ull << (e - 6)) >> 1); /* bucket midpoint */
}

static void conn_open(worker_t *w, conn_t *c, int ep) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c->fd < 0) {
    perror("socket");
    exit(1);
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int r = connect(c->fd, (struct sockaddr *)&g_addr, sizeof g_addr);
  if (r < 0 && errno != EINPROGRESS) {
    w->errors++;
  }
  c->state = 0;
  c->wrote = 0;
  c->hlen = 0;
  c->t_start = now_ns();
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void conn_reset(worker_t *w, conn_t *c, int ep, int error) {
  if (error) w->errors++;
  w->reconnects++;
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  conn_open(w, c, ep);
}

static void start_request(conn_t *c, int ep) {
  c->state = 1;
  c->wrote = 0;
  c->hlen = 0;
  c->t_start = now_ns();
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Returns 1 when a complete response was consumed, 0 when more bytes are needed, -1 on error. */
static int on_headers(worker_t *w, conn_t *c, int *keepalive) {
  char *end = memmem(c->hdr, c->hlen, "\r\n\r\n", 4);
  if (!end) return c->hlen >= sizeof c->hdr - 1 ? -1 : 0;
  size_t hl = (size_t)(end - c->hdr) + 4;
  c->hdr[hl - 2] = 0;
  int status = 0;
  if (sscanf(c->hdr, "HTTP/1.%*c %d", &status) != 1) return -1;
  if (status < 200 || status > 299) w->non2xx++;
  long long clen = -1;
  *keepalive = 1;
  for (char *l = strstr(c->hdr, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
    char *h = l + 2;
    if (!strncasecmp(h, "content-length:", 15)) clen = atoll(h + 15);
    else if (!strncasecmp(h, "connection:", 11) && strcasestr(h, "close")) *keepalive = 0;
    else if (!strncasecmp(h, "transfer-encoding:", 18)) return -1; /* not needed for these files */
  }
  size_t rest = c->hlen - hl;
  if (g_head || status == 204 || status == 304 || clen <= 0) clen = 0;
  if (clen < 0) return -1;
  c->body_left = clen;
  if (rest > 0) {
    size_t use = rest < (size_t)c->body_left ? rest : (size_t)c->body_left;
    c->body_left -= (long long)use; /* bytes past the body cannot come: we never pipeline */
  }
  return c->body_left == 0 ? 1 : 2;
}

static void done_one(worker_t *w, conn_t *c) {
  uint64_t us = (now_ns() - c->t_start) / 1000;
  w->hist[bucket_of(us)]++;
  w->requests++;
}

static void *run_worker(void *arg) {
  worker_t *w = arg;
  int ep = epoll_create1(0);
  for (int i = 0; i < w->nconn; i++) conn_open(w, &w->conns[i], ep);
  struct epoll_event evs[256];
  static __thread char buf[BUF];
  while (1) {
    uint64_t t = now_ns();
    if (t >= g_deadline_ns) break;
    int n = epoll_wait(ep, evs, 256, 50);
    for (int i = 0; i < n; i++) {
      conn_t *c = evs[i].data.ptr;
      if (evs[i].events & (EPOLLERR)) {
        conn_reset(w, c, ep, 1);
        continue;
      }
      if (c->state == 0 && (evs[i].events & EPOLLOUT)) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
          conn_reset(w, c, ep, 1);
          continue;
        }
        start_request(c, ep);
      }
      if (c->state == 1 && (evs[i].events & EPOLLOUT)) {
        ssize_t k = write(c->fd, g_req + c->wrote, g_reqlen - c->wrote);
        if (k < 0 && errno != EAGAIN) {
          conn_reset(w, c, ep, 1);
          continue;
        }
        if (k > 0) c->wrote += (size_t)k;
        if (c->wrote == g_reqlen) {
          c->state = 2;
          struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
        continue;
      }
      if (!(evs[i].events & (EPOLLIN | EPOLLHUP))) continue;
      for (;;) {
        ssize_t k;
        if (c->state == 2) {
          k = read(c->fd, c->hdr + c->hlen, sizeof c->hdr - 1 - c->hlen);
        } else if (c->state == 3) {
          k = read(c->fd, buf, sizeof buf);
        } else break;
        if (k < 0 && errno == EAGAIN) break;
        if (k <= 0) { /* peer closed: fine between requests, an error inside one */
          conn_reset(w, c, ep, !(c->state == 2 && c->hlen == 0));
          break;
        }
        if (c->state == 3) {
          c->body_left -= k;
          if (c->body_left > 0) continue;
          done_one(w, c);
          start_request(c, ep);
          break;
        }
        c->hlen += (size_t)k;
        int keepalive = 1;
        int r = on_headers(w, c, &keepalive);
        if (r == 0) continue;
        if (r < 0) {
          conn_reset(w, c, ep, 1);
          break;
        }
        if (r == 2) {
          c->state = 3;
          continue;
        }
        done_one(w, c);
        if (!keepalive) conn_reset(w, c, ep, 0);
        else start_request(c, ep);
        break;
      }
    }
    /* per-request timeout */
    t = now_ns();
    for (int i = 0; i < w->nconn; i++) {
      conn_t *c = &w->conns[i];
      if (t > c->t_start && t - c->t_start > g_timeout_ns) conn_reset(w, c, ep, 1);
    }
  }
  for (int i = 0; i < w->nconn; i++) close(w->conns[i].fd);
  close(ep);
  return NULL;
}

int main(int argc, char **argv) {
  int threads = 2, conns = 64;
  double dur = 10, timeout_s = 5;
  const char *method = "HEAD";
  int opt;
  while ((opt = getopt(argc, argv, "t:c:d:m:T:")) != -1) {
    switch (opt) {
      case 't': threads = atoi(optarg); break;
      case 'c': conns = atoi(optarg); break;
      case 'd': dur = atof(optarg); break;
      case 'm': method = optarg; break;
      case 'T': timeout_s = atof(optarg); break;
      default: fprintf(stderr, "usage: hload -t N -c N -d S [-m HEAD|GET] [-T S] URL\n"); return 2;
    }
  }
  if (optind >= argc || threads < 1 || conns < threads) {
    fprintf(stderr, "usage: hload -t N -c N -d S [-m HEAD|GET] [-T S] URL\n");
    return 2;
  }
  const char *url = argv[optind];
  char host[256];
  int port = 80;
  const char *path = "/";
  if (strncmp(url, "http://", 7)) {
    fprintf(stderr, "hload: only http:// URLs\n");
    return 2;
  }
  const char *hp = url + 7, *slash = strchr(hp, '/');
  size_t hl = slash ? (size_t)(slash - hp) : strlen(hp);
  if (hl >= sizeof host) return 2;
  memcpy(host, hp, hl);
  host[hl] = 0;
  if (slash) path = slash;
  char *colon = strchr(host, ':');
  if (colon) {
    *colon = 0;
    port = atoi(colon + 1);
  }
  g_addr.sin_family = AF_INET;
  g_addr.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &g_addr.sin_addr) != 1) {
    fprintf(stderr, "hload: host must be an IPv4 literal\n");
    return 2;
  }
  g_head = !strcasecmp(method, "HEAD");
  g_reqlen = (size_t)snprintf(g_req, sizeof g_req,
                              "%s %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: hubcache-bench-hload/1\r\n"
                              "Accept: */*\r\nAccept-Encoding: identity\r\n\r\n",
                              method, path, host, port);
  g_timeout_ns = (uint64_t)(timeout_s * 1e9);
  uint64_t t0 = now_ns();
  g_deadline_ns = t0 + (uint64_t)(dur * 1e9);

  worker_t *ws = calloc((size_t)threads, sizeof *ws);
  pthread_t *tids = calloc((size_t)threads, sizeof *tids);
  for (int i = 0; i < threads; i++) {
    ws[i].id = i;
    ws[i].nconn = conns / threads + (i < conns % threads);
    ws[i].conns = calloc((size_t)ws[i].nconn, sizeof(conn_t));
    pthread_create(&tids[i], NULL, run_worker, &ws[i]);
  }
  uint64_t total = 0, non2xx = 0, errors = 0, reconnects = 0;
  static uint64_t hist[HBUCKETS];
  for (int i = 0; i < threads; i++) {
    pthread_join(tids[i], NULL);
    total += ws[i].requests;
    non2xx += ws[i].non2xx;
    errors += ws[i].errors;
    reconnects += ws[i].reconnects;
    for (int b = 0; b < HBUCKETS; b++) hist[b] += ws[i].hist[b];
  }
  double secs = (double)(now_ns() - t0) / 1e9;
  double ps[] = {0.5, 0.9, 0.99, 0.999, 1.0};
  uint64_t pv[5] = {0};
  for (int p = 0; p < 5; p++) {
    uint64_t want = (uint64_t)((double)total * ps[p]);
    if (want == 0) want = 1;
    uint64_t acc = 0;
    for (int b = 0; b < HBUCKETS; b++) {
      acc += hist[b];
      if (acc >= want) {
        pv[p] = bucket_value(b);
        break;
      }
    }
  }
  printf("{\"method\":\"%s\",\"requests\":%llu,\"duration_s\":%.3f,\"rps\":%.1f,\"non2xx\":%llu,\"errors\":%llu,"
         "\"reconnects\":%llu,\"latency_us\":{\"p50\":%llu,\"p90\":%llu,\"p99\":%llu,\"p999\":%llu,\"max\":%llu}}\n",
         method, (unsigned long long)total, secs, (double)total / secs, (unsigned long long)non2xx,
         (unsigned long long)errors, (unsigned long long)reconnects, (unsigned long long)pv[0],
         (unsigned long long)pv[1], (unsigned long long)pv[2], (unsigned long long)pv[3],
         (unsigned long long)pv[4]);
  return 0;
}
