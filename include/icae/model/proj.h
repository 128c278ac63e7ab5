// The projections LoRA can target and their peft names. Tensor-free (defined in
// src/formats/icae_metadata.cpp, part of icae_text), so that adapter headers can be checked
// without libtorch.
#pragma once
#include <string>

namespace icae {

// The projections LoRA can target, in the order used everywhere in the project.
enum class Proj { Q = 0, K, V, O, Gate, Up, Down };
constexpr int kNumProj = 7;
// "q_proj", "k_proj", ... (the peft target_modules names)
const char* proj_name(Proj p);
Proj parse_proj(const std::string& name);  // throws icae::Error(BadInput)

}  // namespace icae
