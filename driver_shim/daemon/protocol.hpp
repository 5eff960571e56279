// protocol.hpp - the wire protocol between h20d and its clients (version kProtocolVersion).
//
// Transport: a Unix SOCK_SEQPACKET socket, so every frame arrives whole or not at all; a frame
// is a FrameHeader followed by `length` payload bytes (at most kMaxPayload), and may carry file
// descriptors (SCM_RIGHTS) from the daemon to a client, never the other way. A receiver checks the
// header against the bytes it actually got: a frame whose sizes disagree, that was truncated or
// that is larger than the cap closes that connection.
//
// Payloads are little-endian fields written by Writer and read by Reader, which checks every read
// against the bytes left: a short or over-long payload is an error, never a read past the end.
// Every request is answered by one reply of type `request | kReplyBit`, whose payload starts with
// the status (an h20Error_t as i32, and a message string), followed by the body only on success.
//
// Objects (allocations, imports) are named by 64-bit table ids (index and generation, see
// server.cpp), never by pointers; an IPC handle carries a 128-bit random capability. The first
// exchange is HELLO, carrying the protocol version; a daemon answers a mismatch with an error
// status that names both versions (that reply's layout never changes) and closes the connection.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace h20::daemon {

inline constexpr std::uint32_t kProtocolVersion = 1;
inline constexpr std::uint32_t kFrameMagic = 0x44303248;  // "H20D" read as little-endian bytes
inline constexpr std::size_t kMaxPayload = 128 * 1024;
inline constexpr std::size_t kMaxString = 4096;
inline constexpr std::size_t kMaxFdsPerFrame = 1;
inline constexpr std::uint16_t kReplyBit = 0x8000;

enum class MsgType : std::uint16_t {
  hello = 1,      // u32 version, u32 pid, str process name -> the box (server.cpp: hello)
  alloc = 2,      // i32 chip, u64 bytes -> u64 object, u64 offset, u64 size (+ fd)
  free = 3,       // u64 object -> (nothing)
  memInfo = 4,    // i32 chip -> u64 free, u64 total
  ipcExport = 5,  // u64 object -> IpcMemHandle bytes
  ipcOpen = 6,  // IpcMemHandle bytes -> u64 import, i32 chip, u64 offset, u64 size, u64 bytes (+fd)
  ipcClose = 7,         // u64 import -> (nothing)
  processes = 8,        // (nothing) -> u32 n, n x {u32 pid, str name, i32 chip, u64 bytes}
  eventCreate = 9,      // i32 chip -> u64 object (+ fd of its SharedEventState page)
  computeMode = 10,     // i32 chip -> i32 mode
  setComputeMode = 11,  // i32 chip, i32 mode -> (nothing)
  raiseFault = 12,  // i32 chip, i32 code, str message -> (nothing); h20d --allow-fault-injection
};
inline constexpr std::uint16_t kMaxMsgType = 12;

// Chip-level state every client maps read-only (its descriptor comes with the HELLO reply): a
// fault of a chip (raised in the daemon) reaches every process using it. A process has seen the
// faults up to the count it had when it connected or last reset the chip.
struct ChipStatus {
  std::atomic<std::uint64_t> faults{0};  // faults raised so far; written after code and message
  std::atomic<std::int32_t> code{0};
  char message[244]{};
};
struct StatusPage {
  static constexpr int kChips = 64;
  ChipStatus chips[kChips];
};
static_assert(sizeof(ChipStatus) == 256);
// Objects: device memory, or an interprocess event (one page holding a SharedEventState). Both
// are freed with `free`, exported with `ipcExport` and opened with `ipcOpen`; the handle's magic
// says which, and the daemon refuses a handle whose magic is not its object's.
inline constexpr std::uint32_t kMemHandleMagic = 0x4d435049;    // "IPCM"
inline constexpr std::uint32_t kEventHandleMagic = 0x45435049;  // "IPCE"

struct FrameHeader {
  std::uint32_t magic = kFrameMagic;
  std::uint16_t type = 0;
  std::uint16_t flags = 0;  // must be 0
  std::uint32_t length = 0;
  std::uint32_t tag = 0;  // echoed in the reply
};
static_assert(sizeof(FrameHeader) == 16);

// A 128-bit random capability: whoever holds it may open the object it names.
using Capability = std::array<std::uint8_t, 16>;

// The 64 bytes of an h20IpcMemHandle_t or h20IpcEventHandle_t (the public types are opaque).
struct IpcMemHandle {
  std::uint32_t magic = kMemHandleMagic;
  std::uint32_t protocol = kProtocolVersion;
  std::uint64_t daemonInstance = 0;  // random per daemon start: handles of a dead daemon fail
  std::uint64_t object = 0;
  std::int32_t chip = 0;
  std::uint32_t ownerPid = 0;
  std::uint64_t bytes = 0;  // the size the exporter allocated (0 for an event)
  Capability capability{};
  std::uint8_t reserved[8]{};
};
static_assert(sizeof(IpcMemHandle) == 64);

class Writer {
 public:
  void u8(std::uint8_t v) { bytes_.push_back(v); }
  void u16(std::uint16_t v) { put(&v, sizeof v); }
  void u32(std::uint32_t v) { put(&v, sizeof v); }
  void i32(std::int32_t v) { put(&v, sizeof v); }
  void u64(std::uint64_t v) { put(&v, sizeof v); }
  void f64(double v) { put(&v, sizeof v); }
  void str(std::string_view s) {
    const std::size_t n = s.size() < kMaxString ? s.size() : kMaxString;
    u32(static_cast<std::uint32_t>(n));
    put(s.data(), n);
  }
  void put(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::uint8_t*>(p);
    bytes_.insert(bytes_.end(), b, b + n);
  }
  const std::vector<std::uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<std::uint8_t> bytes_;
};

// Reads fields from a payload; the first failed read makes ok() false and every later read
// return zero, so a decoder checks ok() (and done()) once at the end.
class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size) : p_(data), left_(size) {}
  std::uint8_t u8() { return get<std::uint8_t>(); }
  std::uint16_t u16() { return get<std::uint16_t>(); }
  std::uint32_t u32() { return get<std::uint32_t>(); }
  std::int32_t i32() { return get<std::int32_t>(); }
  std::uint64_t u64() { return get<std::uint64_t>(); }
  double f64() { return get<double>(); }
  std::string str() {
    const std::uint32_t n = u32();
    if (n > kMaxString || n > left_) {
      ok_ = false;
      return {};
    }
    std::string s(reinterpret_cast<const char*>(p_), n);
    skip(n);
    return s;
  }
  bool take(void* out, std::size_t n) {
    if (!ok_ || n > left_) {
      ok_ = false;
      std::memset(out, 0, n);
      return false;
    }
    std::memcpy(out, p_, n);
    skip(n);
    return true;
  }
  bool ok() const { return ok_; }
  // True when every byte was read and nothing failed.
  bool done() const { return ok_ && left_ == 0; }
  std::size_t left() const { return left_; }

 private:
  template <class T>
  T get() {
    T v{};
    take(&v, sizeof v);
    return v;
  }
  void skip(std::size_t n) {
    p_ += n;
    left_ -= n;
  }
  const std::uint8_t* p_;
  std::size_t left_;
  bool ok_ = true;
};

// The default socket: $XDG_RUNTIME_DIR/h20/h20d.sock, else /tmp/h20-<uid>/h20d.sock (the folder
// is created with mode 0700 by h20d).
std::string defaultSocketPath();

}  // namespace h20::daemon
