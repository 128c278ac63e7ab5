// Device helpers for timing and memory measurement, one API for CPU and CUDA: benchmarks need
// to wait for queued GPU work before reading a clock, and to report peak memory on either device.
#pragma once
#include <ATen/core/Generator.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>

namespace icae {

// True when this build links libtorch's CUDA runtime (not whether a GPU is present).
bool built_with_cuda();
// Number of usable CUDA devices (0 on a CPU-only machine or build).
int cuda_device_count();
// Waits until all work queued on the device is done (no-op on the CPU).
void synchronize(at::Device device);
// Peak memory since the last reset: the CUDA caching allocator's peak of allocated bytes on a GPU;
// the process's peak resident set (VmHWM) on the CPU, which cannot be reset.
int64_t peak_memory_bytes(at::Device device);
void reset_peak_memory(at::Device device);
// "cpu", "cuda", "cuda:N" -> a device; clear errors when CUDA is asked for but absent.
at::Device parse_device(const std::string& name);
// "f32", "bf16", "f16" -> a scalar type.
at::ScalarType parse_dtype(const std::string& name);
// True when this CPU computes bf16 in hardware (AMX-BF16 or AVX512-BF16). Elsewhere libtorch
// emulates bf16 matmuls in software: a SmolLM2 training update took 32x longer in bf16 than in
// float32 on an AVX2-only EPYC (docs/training.md).
bool cpu_has_native_bf16();
// The dtype "auto" stands for on this device: bf16 on CUDA and on CPUs with native bf16, f32
// elsewhere. Any other name is returned unchanged (parse_dtype checks it).
std::string resolve_auto_dtype(const std::string& name, at::Device device);
// A seeded random generator of the device's kind (its state can be saved and restored).
at::Generator make_generator(at::Device device, uint64_t seed);
// "NVIDIA H200" / the CPU model name, for benchmark reports.
std::string device_name(at::Device device);

}  // namespace icae
