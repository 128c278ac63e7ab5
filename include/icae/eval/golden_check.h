// Recomputes every tensor of a golden folder (format: ../shared/testdata/README.md) and
// compares: base logits, slots, AE greedy decoding, AE/LM/FT losses and their gradients.
// Every setting (k, rate, r, alpha, targets, special ids) is read from meta.json/config.json.
#pragma once
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "icae/core/slot_kind.h"

#include <string>
#include <vector>

namespace icae {

struct GoldenCheckOptions {
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;
  // Key/value slots: the same adapter read as a key/value-slot ICAE, checked against a second
  // file of reference tensors (tests/reference/kv_slots_golden.py writes them): kv_slots,
  // kv_slots1, ae_step_logits, ae_greedy_ids, the losses and gradients under the same names.
  SlotKind slot_kind = SlotKind::Embedding;
  std::string kv_golden;  // that file (required for key/value slots)
};

struct GoldenItem {
  std::string name;
  double error = 0;      // max |a - b| / max |b| (ids: number of mismatches)
  double tolerance = 0;
  bool ok = false;
  std::string detail;
};

struct GoldenReport {
  std::vector<GoldenItem> items;
  bool ok() const {
    for (const auto& i : items)
      if (!i.ok) return false;
    return !items.empty();
  }
};

GoldenReport check_golden(const std::string& dir, const GoldenCheckOptions& options = {});

// max |a - b| / max |b|, in double precision.
double max_relative_error(const at::Tensor& a, const at::Tensor& b);

}  // namespace icae
