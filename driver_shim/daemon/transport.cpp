// transport.cpp - framing and descriptor passing over SOCK_SEQPACKET (see transport.hpp).
#include "daemon/transport.hpp"

#include <fmt/format.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace h20::daemon {

void Fd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::string defaultSocketPath() {
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  if (xdg && xdg[0] == '/') return fmt::format("{}/h20/h20d.sock", xdg);
  return fmt::format("/tmp/h20-{}/h20d.sock", getuid());
}

void writeStatus(Writer& w, int code, std::string_view message) {
  w.i32(code);
  w.str(message);
}

RecvStatus receiveFrame(int sock, bool acceptFds, Frame* out, std::string* error) {
  out->payload.resize(sizeof(FrameHeader) + kMaxPayload + 1);
  out->fd.reset();
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
  iovec iov{out->payload.data(), out->payload.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return RecvStatus::wouldBlock;
    if (errno == ECONNRESET) return RecvStatus::closed;
    *error = fmt::format("recvmsg failed: {}", std::strerror(errno));
    return RecvStatus::bad;
  }
  // Take ownership of every descriptor first, so that none leaks whatever is wrong below.
  std::vector<Fd> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.emplace_back(fd);
    }
  }
  if (n == 0) return RecvStatus::closed;
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    *error = fmt::format("frame larger than {} bytes or with too many descriptors",
                         sizeof(FrameHeader) + kMaxPayload);
    return RecvStatus::bad;
  }
  const auto got = static_cast<std::size_t>(n);
  if (got < sizeof(FrameHeader)) {
    *error = fmt::format("frame of {} bytes is shorter than its {}-byte header", got,
                         sizeof(FrameHeader));
    return RecvStatus::bad;
  }
  std::memcpy(&out->header, out->payload.data(), sizeof(FrameHeader));
  const FrameHeader& h = out->header;
  if (h.magic != kFrameMagic) {
    *error = fmt::format("bad frame magic {:#010x}", h.magic);
    return RecvStatus::bad;
  }
  if (h.flags != 0) {
    *error = fmt::format("frame flags {:#x} are not 0", h.flags);
    return RecvStatus::bad;
  }
  if (h.length > kMaxPayload || h.length != got - sizeof(FrameHeader)) {
    *error = fmt::format("frame header says {} payload bytes, {} arrived (cap {})", h.length,
                         got - sizeof(FrameHeader), kMaxPayload);
    return RecvStatus::bad;
  }
  if (fds.size() > (acceptFds ? kMaxFdsPerFrame : 0)) {
    *error = fmt::format("frame carries {} file descriptors", fds.size());
    return RecvStatus::bad;
  }
  out->payload.erase(out->payload.begin(), out->payload.begin() + sizeof(FrameHeader));
  out->payload.resize(h.length);
  if (!fds.empty()) out->fd = std::move(fds.front());
  return RecvStatus::frame;
}

bool sendFrame(int sock, std::uint16_t type, std::uint32_t tag,
               const std::vector<std::uint8_t>& payload, int fd, std::string* error,
               bool* wouldBlock) {
  if (wouldBlock) *wouldBlock = false;
  if (payload.size() > kMaxPayload) {
    *error =
        fmt::format("payload of {} bytes exceeds the {}-byte cap", payload.size(), kMaxPayload);
    return false;
  }
  FrameHeader h;
  h.type = type;
  h.length = static_cast<std::uint32_t>(payload.size());
  h.tag = tag;
  iovec iov[2] = {{&h, sizeof h}, {const_cast<std::uint8_t*>(payload.data()), payload.size()}};
  return sendMessage(sock, iov, payload.empty() ? 1 : 2, fd, error, wouldBlock);
}

bool sendMessage(int sock, const iovec* parts, int count, int fd, std::string* error,
                 bool* wouldBlock) {
  if (wouldBlock) *wouldBlock = false;
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(parts);
  msg.msg_iovlen = static_cast<std::size_t>(count);
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if ((errno == EAGAIN || errno == EWOULDBLOCK) && wouldBlock) *wouldBlock = true;
    *error = fmt::format("sendmsg failed: {}", std::strerror(errno));
    return false;
  }
  return true;
}

Fd connectSocket(const std::string& path, std::string* error) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    *error =
        fmt::format("socket path '{}' is longer than {} bytes", path, sizeof addr.sun_path - 1);
    return Fd{};
  }
  Fd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!sock) {
    *error = fmt::format("socket() failed: {}", std::strerror(errno));
    return Fd{};
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int rc;
  do {
    rc = ::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    *error = fmt::format("cannot connect to '{}': {}", path, std::strerror(errno));
    return Fd{};
  }
  return sock;
}

}  // namespace h20::daemon
