// Which files a data path means: the one lookup training, evaluation and distillation share
// (files as they are, folders searched recursively for .txt and .jsonl). Torch-free, so the data
// readers compile without libtorch (tests/text, fuzz/data_fuzz.cpp).
#pragma once
#include <string>
#include <vector>

namespace icae {

// The data files behind the given paths: files as they are, folders searched recursively for
// .txt and .jsonl. Sorted within each folder, in argument order across paths. Throws
// icae::Error(Io) for a path that does not exist, and (BadInput) when nothing is found.
std::vector<std::string> list_data_files(const std::vector<std::string>& paths);

}  // namespace icae
