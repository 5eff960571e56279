// memory.cpp - the allocation registry (see memory.hpp).
#include "core/memory.hpp"

#include <mutex>

namespace h20::rt {

void MemoryRegistry::add(const Allocation& a) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  allocs_[a.base] = a;
}

bool MemoryRegistry::addIfFree(const Allocation& a) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto it = allocs_.lower_bound(a.base + a.size);
  if (it != allocs_.begin() && std::prev(it)->second.end() > a.base) return false;
  allocs_[a.base] = a;
  return true;
}

std::optional<Allocation> MemoryRegistry::remove(std::uintptr_t base) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto it = allocs_.find(base);
  if (it == allocs_.end()) return std::nullopt;
  Allocation a = it->second;
  allocs_.erase(it);
  return a;
}

std::optional<Allocation> MemoryRegistry::find(const void* ptr) const {
  const auto p = reinterpret_cast<std::uintptr_t>(ptr);
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = allocs_.upper_bound(p);
  if (it == allocs_.begin()) return std::nullopt;
  --it;
  // A zero-size range still owns its first byte, so a pointer at its base resolves to it.
  const Allocation& a = it->second;
  if (p < a.base + std::max<std::size_t>(a.size, 1)) return a;
  return std::nullopt;
}

std::optional<Allocation> MemoryRegistry::findStart(const void* ptr) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = allocs_.find(reinterpret_cast<std::uintptr_t>(ptr));
  if (it == allocs_.end()) return std::nullopt;
  return it->second;
}

bool MemoryRegistry::overlaps(std::uintptr_t base, std::size_t size) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = allocs_.lower_bound(base + size);
  return it != allocs_.begin() && std::prev(it)->second.end() > base;
}

std::vector<Allocation> MemoryRegistry::allocationsOf(int device) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  std::vector<Allocation> out;
  for (const auto& [base, a] : allocs_)
    if (a.device == device && a.isDevice()) out.push_back(a);
  return out;
}

}  // namespace h20::rt
