// A Hugging Face tokenizer.json built from a GGUF file's tokenizer metadata (tokenizer.ggml.*),
// for icae::tok::Tokenizer and for `icae export-tokenizer`.
//
// Supported: model "gpt2" (byte-level BPE with merges; pre-tokenizer chosen by tokenizer.ggml.pre:
// gpt2/default, smollm/starcoder/refact/command-r (digits split one by one, then GPT-2's regex),
// llama-bpe/llama3 and qwen2 patterns) and model "llama" (SentencePiece-style BPE with byte
// fallback; merges from the file or, like transformers, derived from the token scores).
// Token types CONTROL and UNKNOWN become special added tokens, USER_DEFINED plain added tokens.
#pragma once
#include <nlohmann/json.hpp>

#include "icae/formats/gguf.h"

namespace icae::gguf {

// Throws icae::Error: BadInput for inconsistent metadata (lengths, ids out of range, duplicate
// tokens), Unsupported for a tokenizer model or pre-tokenizer it does not know (naming it).
nlohmann::json tokenizer_json_from_gguf(const GgufFile& file);

}  // namespace icae::gguf
