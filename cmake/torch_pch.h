// Precompiled header for every target that uses libtorch. Parsing these once saves ~10 s per
// translation unit on a 2-core machine.
#pragma once
#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/generated/variable_factories.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
#include <memory>
#include <optional>
