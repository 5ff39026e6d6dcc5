// The send queue of one connection: frames waiting for the kernel to take them.
//
// Bytes live in reference-counted chunks so that a frame published to many subscribers is built once and
// queued by reference on each of them (fan-out costs one chunk, not one copy per subscriber). Private sends
// append to the tail chunk while it has room, so a burst of small sends costs one allocation, not one each.
// A connection whose queue is empty holds no memory for it.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace edgews::core {

// Not thread-safe: a chunk belongs to one reactor thread, like the connections that queue it.
class Chunk {
 public:
  // Bytes of chunks alive that this thread created and has not freed (capacity, not size): a frame shared by
  // every subscriber is one chunk and counts once. What the memory budget counts as queued output.
  static std::int64_t bytes_on_this_thread();
  static Chunk* create(std::size_t capacity);
  void retain() { ++refs_; }
  void release();
  std::uint8_t* data() { return bytes_; }
  const std::uint8_t* data() const { return bytes_; }
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return capacity_; }
  std::size_t room() const { return capacity_ - size_; }
  bool shared() const { return refs_ > 1; }
  // Appends and returns where the appended bytes start.
  std::size_t append(const void* bytes, std::size_t len);
  std::uint8_t* grow(std::size_t len);  // reserves len bytes at the end, returns their address

 private:
  Chunk() = default;
  std::uint32_t refs_ = 1;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  alignas(16) std::uint8_t bytes_[1];  // capacity_ bytes follow
};

class OutQueue {
 public:
  OutQueue() = default;
  OutQueue(const OutQueue&) = delete;
  OutQueue& operator=(const OutQueue&) = delete;
  ~OutQueue() { clear(); }

  bool empty() const { return bytes_ == 0; }
  std::size_t bytes() const { return bytes_; }
  // Bytes of the chunks this queue made for itself (shared chunks are not counted): what it gave back to malloc,
  // or will when it goes.
  std::size_t allocated() const { return allocated_; }

  // Copies a frame (header then payload) into the queue.
  void append_frame(std::span<const std::uint8_t> header, std::span<const std::uint8_t> payload);
  void append(std::span<const std::uint8_t> bytes) { append_frame(bytes, {}); }
  // Queues a whole shared chunk by reference.
  void append_shared(Chunk* chunk);

  // Fills iov with what to write next; returns the count (at most max).
  int gather(iovec* iov, int max) const;
  // Drops n bytes from the front after a write took them.
  void consume(std::size_t n);
  void clear();

 private:
  struct Segment {
    Chunk* chunk;
    std::uint32_t offset;
    std::uint32_t length;
  };
  static constexpr std::size_t kMinChunk = 4096;

  std::vector<Segment> segments_;
  std::size_t head_ = 0;  // first live segment
  std::size_t bytes_ = 0;
  std::size_t allocated_ = 0;
};

}  // namespace edgews::core
