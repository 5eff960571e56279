// config.hpp - the runtime's typed configuration and its one parser of the environment.
//
// Every environment variable the runtime reads is parsed here, once, at initialisation:
//   H20_EMU_DEVICES        emulated chips (1..64, default 8)
//   H20_VISIBLE_DEVICES    comma-separated chip indices visible to the process, in that order
//                          (CUDA_VISIBLE_DEVICES semantics: the list stops at the first invalid
//                          or repeated entry; empty makes no device visible)
//   H20_EMU_MEMORY_BUDGET  host memory that may back device allocations, e.g. 8GiB, 512MiB
//                          (default: half of the host's physical memory)
//   H20_EMU_WORKERS        emulator worker threads (default: one per host core)
//   H20_EMU_TOPOLOGY       switch | mesh | ring | pairs, or a JSON topology file (default switch)
//   H20_LOG_LEVEL          off | error | warning | info | debug (default error)
//   H20_DRIVER             emu (default: the embedded emulator, private to this process) or
//                          daemon (the chips served by h20d to every process of the user)
//   H20_DAEMON_SOCKET      h20d's socket (default $XDG_RUNTIME_DIR/h20/h20d.sock, else
//                          /tmp/h20-<uid>/h20d.sock)
// With H20_DRIVER=daemon the chip count, topology and memory budget are h20d's (its options);
// H20_EMU_WORKERS still sizes this process's engine, H20_VISIBLE_DEVICES still selects chips.
// A malformed value makes initialisation fail with a message naming the variable and value.
#pragma once

#include "core/log.hpp"
#include "driver.hpp"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace h20::rt {

struct RuntimeConfig {
  driver::DriverConfig driver;
  std::optional<std::string> visibleDevices;  // raw H20_VISIBLE_DEVICES, applied to the chip count
  LogLevel logLevel = LogLevel::error;
};

using EnvLookup = std::function<const char*(const char*)>;

// Throws Error(h20ErrorInitializationError) on a malformed variable.
RuntimeConfig parseConfig(const EnvLookup& env);
// The chips visible under `spec` for a box of `chipCount` chips, in order.
std::vector<int> parseVisibleDevices(const std::string& spec, int chipCount);
// "64MiB", "8GiB", "1048576", "2G": bytes; nullopt if malformed.
std::optional<std::size_t> parseByteSize(const std::string& text);

}  // namespace h20::rt
