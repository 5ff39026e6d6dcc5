// Handshake throughput: parse + validate + write the 101 for the real Chromium request head, SHA-1 included,
// reusing the output string (no allocation per handshake in steady state). Beside it, the pieces and the SHA-1
// variants (one-shot SHA1(), EVP_Digest per call, a reused EVP_MD_CTX with a prefetched EVP_MD, the low-level
// SHA1_* functions on a stack context) and a memcpy of the same bytes as the floor.
#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "codec/handshake_request.hpp"
#include "codec/handshake_response.hpp"
#include "codec/http_request.hpp"

namespace {

using namespace edgews::codec;

const std::string& chromium_head() {
  static const std::string head = [] {
    std::ifstream in(EDGEWS_SOURCE_DIR "/tests/fixtures/handshakes/chromium-plain.http", std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }();
  return head;
}

constexpr std::string_view kKeyAndGuid = "PB9iGC1dHnL0A8nXLZKaTg==258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void BM_FullHandshake(benchmark::State& state) {
  const std::string& head = chromium_head();
  std::vector<HttpHeader> storage(64);
  std::vector<char> scratch(1024);
  std::string out;
  out.reserve(512);
  for (auto _ : state) {
    HttpRequest request;
    const HttpParseResult parsed = parse_http_request(head, 0, {}, storage, request);
    UpgradeRequest upgrade;
    const Refusal refusal = validate_upgrade_request(request, {}, upgrade, scratch);
    out.clear();
    const bool written =
        write_switching_protocols(out, accept_view(compute_accept(upgrade.key)), {}, {}, nullptr);
    benchmark::DoNotOptimize(out.data());
    if (parsed.status != HttpParseStatus::complete || refusal || !written) state.SkipWithError("handshake failed");
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(head.size()));
}
BENCHMARK(BM_FullHandshake);

void BM_ParseOnly(benchmark::State& state) {
  const std::string& head = chromium_head();
  std::vector<HttpHeader> storage(64);
  for (auto _ : state) {
    HttpRequest request;
    benchmark::DoNotOptimize(parse_http_request(head, 0, {}, storage, request));
    benchmark::DoNotOptimize(request.head_length);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(head.size()));
}
BENCHMARK(BM_ParseOnly);

void BM_ParseByteByByte(benchmark::State& state) {
  const std::string& head = chromium_head();
  std::vector<HttpHeader> storage(64);
  for (auto _ : state) {
    HttpRequest request;
    std::size_t last_len = 0;
    for (std::size_t n = 1; n <= head.size(); ++n) {
      const HttpParseResult r = parse_http_request(std::string_view(head).substr(0, n), last_len, {}, storage, request);
      if (r.status != HttpParseStatus::need_more) break;
      last_len = n;
    }
    benchmark::DoNotOptimize(request.head_length);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParseByteByByte);

void BM_ComputeAccept(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(compute_accept("PB9iGC1dHnL0A8nXLZKaTg=="));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ComputeAccept);

void BM_Sha1OneShot(benchmark::State& state) {
  unsigned char digest[SHA_DIGEST_LENGTH];
  for (auto _ : state) {
    SHA1(reinterpret_cast<const unsigned char*>(kKeyAndGuid.data()), kKeyAndGuid.size(), digest);
    benchmark::DoNotOptimize(digest);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Sha1OneShot);

void BM_Sha1EvpDigestPerCall(benchmark::State& state) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  for (auto _ : state) {
    EVP_Digest(kKeyAndGuid.data(), kKeyAndGuid.size(), digest, &length, EVP_sha1(), nullptr);
    benchmark::DoNotOptimize(digest);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Sha1EvpDigestPerCall);

void BM_Sha1EvpReusedContext(benchmark::State& state) {
  EVP_MD* md = EVP_MD_fetch(nullptr, "SHA1", nullptr);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  for (auto _ : state) {
    EVP_DigestInit_ex2(ctx, md, nullptr);
    EVP_DigestUpdate(ctx, kKeyAndGuid.data(), kKeyAndGuid.size());
    EVP_DigestFinal_ex(ctx, digest, &length);
    benchmark::DoNotOptimize(digest);
  }
  EVP_MD_CTX_free(ctx);
  EVP_MD_free(md);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Sha1EvpReusedContext);

// What compute_accept uses: the low-level functions on a stack context (no provider context freed and allocated
// per digest, which OpenSSL 3.0's EVP_DigestInit_ex2 does even on a reused EVP_MD_CTX). Deprecated in 3.0.
void BM_Sha1LowLevelStackContext(benchmark::State& state) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  unsigned char digest[SHA_DIGEST_LENGTH];
  for (auto _ : state) {
    SHA_CTX ctx;
    SHA1_Init(&ctx);
    SHA1_Update(&ctx, kKeyAndGuid.data(), kKeyAndGuid.size());
    SHA1_Final(digest, &ctx);
    benchmark::DoNotOptimize(digest);
  }
#pragma GCC diagnostic pop
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Sha1LowLevelStackContext);

void BM_BaselineMemcpyOfTheHead(benchmark::State& state) {
  const std::string& head = chromium_head();
  std::string out(head.size(), '\0');
  for (auto _ : state) {
    std::memcpy(out.data(), head.data(), head.size());
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(head.size()));
}
BENCHMARK(BM_BaselineMemcpyOfTheHead);

}  // namespace

BENCHMARK_MAIN();
