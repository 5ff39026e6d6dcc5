// libwebsockets echo server for bench/load/peers.sh, after the library's minimal-ws-server-echo example: each
// received piece is queued and written back from the WRITEABLE callback, one lws_write per callback as the lws
// documentation requires, keeping the fragment flags so 64 KiB messages may arrive and leave in pieces. Speed
// settings the documentation offers: a 64 KiB receive buffer, logging at errors only, no extensions (so no
// per-message deflate), the default poll() event loop of the Debian build with one service thread.
//
// TLS mode (scenario (e)): the same server with the library's OpenSSL backend (LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT,
// the certificate and key paths in the context creation info, as minimal-ws-server-tls does), TLS 1.3 only.
//
// usage: lws_echo [PORT] [--tls CERT KEY]   (0 = any free port; prints "lws_echo: listening on port N")
#include <libwebsockets.h>
#include <openssl/ssl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct piece {
  struct piece* next;
  size_t len;
  int binary, first, final;
  unsigned char data[];  // LWS_PRE bytes of headroom, then the payload
};

struct session {
  struct piece* head;
  struct piece* tail;
  int queued;
  int paused;
};

enum { kMaxQueued = 256 };  // stop reading from a client that does not read its echoes

static int callback_echo(struct lws* wsi, enum lws_callback_reasons reason, void* user, void* in, size_t len) {
  struct session* s = (struct session*)user;
  switch (reason) {
    case LWS_CALLBACK_RECEIVE: {
      struct piece* p = malloc(sizeof *p + LWS_PRE + len);
      if (!p) return -1;
      p->next = NULL;
      p->len = len;
      p->binary = lws_frame_is_binary(wsi);
      p->first = lws_is_first_fragment(wsi);
      p->final = lws_is_final_fragment(wsi);
      memcpy(p->data + LWS_PRE, in, len);
      if (s->tail) s->tail->next = p; else s->head = p;
      s->tail = p;
      if (++s->queued >= kMaxQueued && !s->paused) {
        s->paused = 1;
        lws_rx_flow_control(wsi, 0);
      }
      lws_callback_on_writable(wsi);
      break;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE: {
      struct piece* p = s->head;
      if (!p) break;
      const int flags = lws_write_ws_flags(p->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT, p->first, p->final);
      if (lws_write(wsi, p->data + LWS_PRE, p->len, (enum lws_write_protocol)flags) < (int)p->len) return -1;
      s->head = p->next;
      if (!s->head) s->tail = NULL;
      free(p);
      --s->queued;
      if (s->paused && s->queued < kMaxQueued / 2) {
        s->paused = 0;
        lws_rx_flow_control(wsi, 1);
      }
      if (s->head) lws_callback_on_writable(wsi);
      break;
    }
    case LWS_CALLBACK_CLOSED:
      while (s->head) {
        struct piece* next = s->head->next;
        free(s->head);
        s->head = next;
      }
      s->tail = NULL;
      break;
    default:
      break;
  }
  return 0;
}

static const struct lws_protocols protocols[] = {
    {"echo", callback_echo, sizeof(struct session), 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int main(int argc, char** argv) {
  lws_set_log_level(LLL_ERR, NULL);
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.port = argc > 1 ? atoi(argv[1]) : 0;
  info.iface = "127.0.0.1";
  info.protocols = protocols;
  info.count_threads = 1;
  info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
  if (argc > 4 && strcmp(argv[2], "--tls") == 0) {
    info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.ssl_cert_filepath = argv[3];
    info.ssl_private_key_filepath = argv[4];
    info.ssl_options_set = SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 | SSL_OP_NO_TLSv1_2;  // TLS 1.3 only
  }
  struct lws_context* context = lws_create_context(&info);
  if (!context) {
    fprintf(stderr, "lws_echo: lws_create_context failed\n");
    return 1;
  }
  struct lws_vhost* vhost = lws_get_vhost_by_name(context, "default");
  printf("lws_echo: listening on port %d\n", vhost ? lws_get_vhost_listen_port(vhost) : info.port);
  fflush(stdout);
  while (lws_service(context, 0) >= 0) {
  }
  lws_context_destroy(context);
  return 0;
}
