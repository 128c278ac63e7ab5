#include "icae/infer/fingerprint.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <cstring>

#include "icae/core/icae.h"

namespace icae {

std::string adapter_fingerprint(const Icae& icae) {
  uint64_t h = 1469598103934665603ull;
  auto mix_bytes = [&](const void* data, size_t n) {
    const auto* bytes = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ bytes[i]) * 1099511628211ull;
  };
  at::NoGradGuard no_grad;
  for (const at::Tensor& t : icae.trainable_parameters()) {
    if (!t.defined()) continue;
    // Shapes too: two adapters that differ only in rank must not collide.
    for (int64_t s : t.sizes()) mix_bytes(&s, sizeof s);
    at::Tensor flat = t.detach().reshape(-1);
    const int64_t n = flat.numel(), step = std::max<int64_t>(1, n / 257);
    at::Tensor sample = flat.slice(0, 0, n, step).to(at::kCPU).to(at::kBFloat16).contiguous();
    mix_bytes(sample.data_ptr(), static_cast<size_t>(sample.numel()) * 2);
  }
  const int64_t k = icae.config().mem_size;
  const double rate = icae.config().compression_rate;
  mix_bytes(&k, sizeof k);
  mix_bytes(&rate, sizeof rate);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace icae
