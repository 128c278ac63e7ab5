// CUDA paths are compiled whenever libtorch has CUDA (ICAE_WITH_CUDA), so CI on a machine
// without a GPU still compiles them; at run time they are used only for CUDA devices.
#include "icae/util/device.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>

#include <fstream>
#include <string>

#ifdef ICAE_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <cuda_runtime_api.h>
#endif

#include "icae/util/error.h"

namespace icae {

namespace {
int64_t cpu_peak_rss() {
  std::ifstream in("/proc/self/status");
  std::string key;
  while (in >> key) {
    if (key == "VmHWM:") {
      int64_t kb = 0;
      in >> kb;
      return kb * 1024;
    }
    std::getline(in, key);
  }
  return 0;
}
}  // namespace

at::Device parse_device(const std::string& name) {
  if (name == "cpu") return at::kCPU;
  if (name.rfind("cuda", 0) == 0) {
    ICAE_CHECK(at::hasCUDA(), ErrorKind::Usage, "--device " + name + ": no CUDA device is available here");
    try {
      return at::Device(name);
    } catch (const std::exception&) {
      fail(ErrorKind::Usage, "--device: cannot parse '" + name + "'");
    }
  }
  fail(ErrorKind::Usage, "--device must be cpu, cuda or cuda:N, got '" + name + "'");
}

at::ScalarType parse_dtype(const std::string& name) {
  if (name == "f32") return at::kFloat;
  if (name == "bf16") return at::kBFloat16;
  if (name == "f16") return at::kHalf;
  fail(ErrorKind::Usage, "--dtype must be f32, bf16 or f16, got '" + name + "'");
}

bool cpu_has_native_bf16() {
  static const bool yes = __builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16");
  return yes;
}

std::string resolve_auto_dtype(const std::string& name, at::Device device) {
  if (name != "auto") return name;
  return device.is_cuda() || cpu_has_native_bf16() ? "bf16" : "f32";
}

at::Generator make_generator(at::Device device, uint64_t seed) {
#ifdef ICAE_WITH_CUDA
  if (device.is_cuda()) {
    at::Generator g = at::cuda::detail::createCUDAGenerator(device.index() < 0 ? 0 : device.index());
    g.set_current_seed(seed);
    return g;
  }
#endif
  ICAE_CHECK(device.is_cpu(), ErrorKind::Unsupported, "random generators on " + device.str() + " are not supported");
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

bool built_with_cuda() {
#ifdef ICAE_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() { return at::hasCUDA() ? static_cast<int>(at::getNumGPUs()) : 0; }

void synchronize(at::Device device) {
  if (!device.is_cuda()) return;
#ifdef ICAE_WITH_CUDA
  c10::cuda::device_synchronize();
#else
  fail(ErrorKind::Unsupported, "this build has no CUDA support");
#endif
}

int64_t peak_memory_bytes(at::Device device) {
  if (!device.is_cuda()) return cpu_peak_rss();
#ifdef ICAE_WITH_CUDA
  const auto index = device.has_index() ? device.index() : c10::cuda::current_device();
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
  return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
#else
  fail(ErrorKind::Unsupported, "this build has no CUDA support");
#endif
}

void reset_peak_memory(at::Device device) {
  if (!device.is_cuda()) return;
#ifdef ICAE_WITH_CUDA
  const auto index = device.has_index() ? device.index() : c10::cuda::current_device();
  c10::cuda::CUDACachingAllocator::resetPeakStats(index);
#endif
}

std::string device_name(at::Device device) {
  if (device.is_cuda()) {
#ifdef ICAE_WITH_CUDA
    cudaDeviceProp prop{};
    const int index = device.has_index() ? device.index() : c10::cuda::current_device();
    if (cudaGetDeviceProperties(&prop, index) == cudaSuccess) return prop.name;
#endif
    return "cuda";
  }
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "cpu";
}

}  // namespace icae
