// transport.hpp - frames over a Unix SOCK_SEQPACKET socket, with descriptor passing.
//
// Plain POSIX calls shared by the daemon (which drives them from its Boost.Asio event loop, on
// non-blocking sockets) and the client (blocking, with a receive timeout). Nothing here trusts
// the peer: a received frame is checked against its header, the payload cap and the descriptor
// limit before anyone decodes it, and descriptors that arrive where none may are closed.
#pragma once

#include "daemon/protocol.hpp"

#include <sys/uio.h>

#include <string>
#include <vector>

namespace h20::daemon {

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() {
    const int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset();

 private:
  int fd_ = -1;
};

struct Frame {
  FrameHeader header;
  std::vector<std::uint8_t> payload;
  Fd fd;  // a descriptor that came with the frame, if any
  Reader reader() const { return Reader(payload.data(), payload.size()); }
};

enum class RecvStatus { frame, closed, wouldBlock, bad };

// Receives one frame. `acceptFds`: whether a descriptor may come with it (clients accept one;
// the daemon accepts none and closes any it is sent). On `bad`, *error says why (the caller
// closes the connection).
RecvStatus receiveFrame(int sock, bool acceptFds, Frame* out, std::string* error);

// Sends one frame (with `fd` attached when >= 0). False with *error when the socket refused it;
// errno EAGAIN is reported as *wouldBlock (a non-blocking sender retries when writable).
bool sendFrame(int sock, std::uint16_t type, std::uint32_t tag,
               const std::vector<std::uint8_t>& payload, int fd, std::string* error,
               bool* wouldBlock = nullptr);

// Sends `count` byte ranges as one message (with `fd` attached when >= 0): what sendFrame does
// with a header and a payload, and what tests use to send bytes that are not a frame.
bool sendMessage(int sock, const iovec* parts, int count, int fd, std::string* error,
                 bool* wouldBlock = nullptr);

// A reply's status prefix.
void writeStatus(Writer& w, int code, std::string_view message);

// Connects to the daemon's socket (blocking). Invalid Fd with *error on failure.
Fd connectSocket(const std::string& path, std::string* error);

}  // namespace h20::daemon
