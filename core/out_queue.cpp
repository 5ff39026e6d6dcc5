#include "core/out_queue.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

namespace edgews::core {

namespace {
// Signed: a chunk freed on another thread than its creator's (a server destroyed from the main thread) moves
// that thread's figure below zero, not the reactor's.
thread_local std::int64_t t_chunk_bytes = 0;
}  // namespace

std::int64_t Chunk::bytes_on_this_thread() { return t_chunk_bytes; }

Chunk* Chunk::create(std::size_t capacity) {
  void* memory = std::malloc(offsetof(Chunk, bytes_) + capacity);
  if (memory == nullptr) throw std::bad_alloc();
  auto* chunk = new (memory) Chunk();
  chunk->capacity_ = capacity;
  t_chunk_bytes += static_cast<std::int64_t>(capacity);
  return chunk;
}

void Chunk::release() {
  if (--refs_ == 0) {
    t_chunk_bytes -= static_cast<std::int64_t>(capacity_);
    this->~Chunk();
    std::free(this);
  }
}

std::size_t Chunk::append(const void* bytes, std::size_t len) {
  const std::size_t at = size_;
  if (len != 0) std::memcpy(bytes_ + size_, bytes, len);
  size_ += len;
  return at;
}

std::uint8_t* Chunk::grow(std::size_t len) {
  std::uint8_t* at = bytes_ + size_;
  size_ += len;
  return at;
}

void OutQueue::append_frame(std::span<const std::uint8_t> header, std::span<const std::uint8_t> payload) {
  const std::size_t len = header.size() + payload.size();
  if (len == 0) return;
  // Extend the tail segment in place when it is the private tail of its chunk and the chunk has room.
  if (head_ < segments_.size()) {
    Segment& tail = segments_.back();
    Chunk* chunk = tail.chunk;
    if (!chunk->shared() && tail.offset + tail.length == chunk->size() && chunk->room() >= len &&
        tail.length + len <= UINT32_MAX) {
      chunk->append(header.data(), header.size());
      chunk->append(payload.data(), payload.size());
      tail.length += static_cast<std::uint32_t>(len);
      bytes_ += len;
      return;
    }
  }
  // Segments count their length in 32 bits; a larger frame is split over several chunks.
  std::size_t remaining_header = header.size();
  std::size_t remaining_payload = payload.size();
  const std::uint8_t* h = header.data();
  const std::uint8_t* p = payload.data();
  while (remaining_header + remaining_payload != 0) {
    const std::size_t want = std::min<std::size_t>(remaining_header + remaining_payload, 1u << 30);
    Chunk* chunk = Chunk::create(std::max(want, kMinChunk));
    allocated_ += chunk->capacity();
    const std::size_t from_header = std::min(remaining_header, want);
    chunk->append(h, from_header);
    h += from_header;
    remaining_header -= from_header;
    const std::size_t from_payload = want - from_header;
    chunk->append(p, from_payload);
    p += from_payload;
    remaining_payload -= from_payload;
    segments_.push_back({chunk, 0, static_cast<std::uint32_t>(want)});
    bytes_ += want;
  }
}

void OutQueue::append_shared(Chunk* chunk) {
  if (chunk->size() == 0) return;
  chunk->retain();
  segments_.push_back({chunk, 0, static_cast<std::uint32_t>(chunk->size())});
  bytes_ += chunk->size();
}

int OutQueue::gather(iovec* iov, int max) const {
  int n = 0;
  for (std::size_t i = head_; i < segments_.size() && n < max; ++i, ++n) {
    iov[n].iov_base = segments_[i].chunk->data() + segments_[i].offset;
    iov[n].iov_len = segments_[i].length;
  }
  return n;
}

void OutQueue::consume(std::size_t n) {
  bytes_ -= n;
  while (n != 0) {
    Segment& s = segments_[head_];
    if (n < s.length) {
      s.offset += static_cast<std::uint32_t>(n);
      s.length -= static_cast<std::uint32_t>(n);
      return;
    }
    n -= s.length;
    s.chunk->release();
    ++head_;
  }
  if (head_ == segments_.size()) {
    // Drained: give the memory back, so an idle connection holds nothing for its queue.
    segments_.clear();
    if (segments_.capacity() > 16) segments_.shrink_to_fit();
    head_ = 0;
  } else if (head_ >= 64 && head_ * 2 >= segments_.size()) {
    segments_.erase(segments_.begin(), segments_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
}

void OutQueue::clear() {
  for (std::size_t i = head_; i < segments_.size(); ++i) segments_[i].chunk->release();
  segments_.clear();
  segments_.shrink_to_fit();
  head_ = 0;
  bytes_ = 0;
}

}  // namespace edgews::core
