// Out-of-tree consumer of an installed icae: loads a golden tiny model and its adapter through
// the public API, compresses the golden context, reconstructs it and checks the golden ids.
#include <icae/api.h>
#include <icae/io/tensor_io.h>

#include <ATen/ATen.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: consumer GOLDEN_DIR\n";
    return 2;
  }
  const std::string dir = argv[1];
  try {
    icae::OpenOptions o;
    o.lora_alpha = 32;  // the golden adapter is in the released layout, which stores none
    icae::Session session = icae::open_session(dir + "/base", dir + "/icae.safetensors", o);
    icae::TensorMap golden = icae::load_safetensors(dir + "/golden.safetensors");
    auto ids = [](const at::Tensor& t) {
      at::Tensor c = t.reshape({-1}).to(at::kLong).contiguous();
      return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
    };
    const std::vector<int64_t> want = ids(golden.at("ae_greedy_ids"));
    session.options().max_new_tokens = static_cast<int64_t>(want.size());
    at::Tensor slots = session.compress({ids(golden.at("context_ids"))}).front();
    icae::Completion c = session.reconstruct(slots);
    std::cout << "slots " << slots.size(0) << "x" << slots.size(1) << ", reconstruction "
              << (c.ids == want ? "matches" : "DIFFERS FROM") << " the golden ids\n";
    return c.ids == want ? 0 : 1;
  } catch (const icae::Error& e) {
    std::cerr << "consumer: " << e.what() << "\n";
    return e.exit_code();
  }
}
