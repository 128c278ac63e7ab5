#include "rope.h"

#include <ATen/ATen.h>

#include <cmath>

namespace icae::rope {

at::Tensor inverse_frequencies(const ModelConfig& config, at::Device device) {
  const int64_t dim = config.head_dim;
  const auto& r = config.rope;
  // Computed in double on the CPU, then stored as float32: the same values HF gets in float32
  // up to the last bit, on every device.
  at::Tensor exponent = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<float>(dim);
  at::Tensor inv = 1.0 / at::pow(static_cast<float>(r.theta), exponent);
  if (r.type == "linear") {
    inv = inv / static_cast<float>(r.factor);
  } else if (r.type == "llama3") {
    // Long wavelengths are slowed by `factor`, short ones kept, the band between interpolated.
    const double low_wavelen = r.original_max_position_embeddings / r.low_freq_factor;
    const double high_wavelen = r.original_max_position_embeddings / r.high_freq_factor;
    at::Tensor wavelen = 2 * M_PI / inv;
    at::Tensor scaled = at::where(wavelen > low_wavelen, inv / r.factor, inv);
    at::Tensor smooth = (r.original_max_position_embeddings / wavelen - r.low_freq_factor) /
                        (r.high_freq_factor - r.low_freq_factor);
    at::Tensor smoothed = (1 - smooth) * scaled / r.factor + smooth * scaled;
    at::Tensor medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen);
    inv = at::where(medium, smoothed, scaled);
  }
  return inv.to(device);
}

std::pair<at::Tensor, at::Tensor> cos_sin(const at::Tensor& inv_freq, const at::Tensor& position_ids,
                                          at::ScalarType dtype) {
  // [B, T, 1] * [D/2] -> [B, T, D/2], in float32 as HF does (autocast disabled there).
  at::Tensor freqs = position_ids.to(at::kFloat).unsqueeze(-1) * inv_freq;
  at::Tensor c = freqs.cos(), s = freqs.sin();
  return {at::cat({c, c}, -1).to(dtype).unsqueeze(1), at::cat({-s, s}, -1).to(dtype).unsqueeze(1)};
}

at::Tensor apply(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& signed_sin) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor swapped = at::cat({x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return at::addcmul(x * cos, swapped, signed_sin);
}

}  // namespace icae::rope
