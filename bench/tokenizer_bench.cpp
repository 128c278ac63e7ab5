// Encode throughput of the tokenizer (one thread) on English prose, and load times.
//   tokenizer_bench [--shared DIR] [--mb N] [--tokenizer NAME]...
// Reads the State of the Union corpus (DIR/corpus/sotu/*.txt) up to N MB (default 4), then for
// each tokenizer in DIR/testdata/tokenizers: load time, and encode MB/s over all documents on a
// fresh tokenizer (cold word cache: first pass) and again (warm: second pass).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "icae/tokenizer/tokenizer.h"

#ifndef ICAE_SHARED_DIR
#define ICAE_SHARED_DIR "../shared"
#endif

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

static double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int main(int argc, char** argv) {
  std::string shared = ICAE_SHARED_DIR;
  double max_mb = 4;
  std::vector<std::string> names;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--shared" && i + 1 < argc) shared = argv[++i];
    else if (a == "--mb" && i + 1 < argc) max_mb = std::stod(argv[++i]);
    else if (a == "--tokenizer" && i + 1 < argc) names.push_back(argv[++i]);
    else {
      std::fprintf(stderr, "usage: tokenizer_bench [--shared DIR] [--mb N] [--tokenizer NAME]...\n");
      return 2;
    }
  }
  if (names.empty()) names = {"gpt2", "llama3", "qwen3", "llama2", "mistral"};

  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(shared + "/corpus/sotu"))
    if (e.path().extension() == ".txt") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::vector<std::string> docs;
  size_t bytes = 0;
  for (const auto& f : files) {
    if (bytes >= max_mb * 1e6) break;
    std::ifstream in(f, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    docs.push_back(ss.str());
    bytes += docs.back().size();
  }
  std::printf("corpus: %zu documents, %.2f MB (sotu)\n", docs.size(), bytes / 1e6);
  std::printf("%-8s %10s %12s %12s %10s %12s\n", "name", "load_s", "cold_MB/s", "warm_MB/s", "tokens", "bytes/token");
  for (const auto& name : names) {
    auto t0 = Clock::now();
    const auto tok = icae::tok::Tokenizer::from_file(shared + "/testdata/tokenizers/" + name + "/tokenizer.json");
    const double load = seconds_since(t0);
    double pass[2];
    size_t tokens = 0;
    for (int p = 0; p < 2; ++p) {
      tokens = 0;
      std::vector<icae::tok::TokenId> ids;
      t0 = Clock::now();
      for (const auto& d : docs) {
        ids.clear();
        tok.encode_into(d, ids);
        tokens += ids.size();
      }
      pass[p] = seconds_since(t0);
    }
    std::printf("%-8s %10.3f %12.1f %12.1f %10zu %12.2f\n", name.c_str(), load, bytes / 1e6 / pass[0],
                bytes / 1e6 / pass[1], tokens, double(bytes) / tokens);
  }
  return 0;
}
