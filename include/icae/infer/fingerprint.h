// A short hash that recognises an ICAE adapter (its trained tensors, k and rate), as
// Transformer::fingerprint() recognises a base model: slots made by one adapter mean nothing
// to another, so slot files record both and refuse a mismatch.
#pragma once
#include <string>

namespace icae {

class Icae;

// FNV-1a over bf16-rounded samples of every trainable tensor (LoRA, memory embeddings and
// whatever else Icae::trainable_parameters() holds), then k and the compression rate.
// Independent of device and dtype; 16 hex digits.
std::string adapter_fingerprint(const Icae& icae);

}  // namespace icae
