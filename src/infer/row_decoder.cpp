#include "icae/infer/row_decoder.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "icae/util/error.h"

namespace icae {

RowDecoder::RowDecoder(RowDecoderOptions options) : options_(std::move(options)), sampler_(options_.sampling) {
  ICAE_CHECK(options_.max_new_tokens >= 0, ErrorKind::Usage, "max_new_tokens must be >= 0");
  out_.stop_reason = "max_new_tokens";
  done_ = options_.max_new_tokens == 0;
}

bool RowDecoder::accept(const at::Tensor& logits) {
  ICAE_CHECK(!done_, ErrorKind::Internal, "a finished row was given logits");
  if (options_.keep_logits) out_.logits.push_back(logits.to(at::kCPU).to(at::kFloat));
  const int64_t id = sampler_.pick(logits);
  out_.ids.push_back(id);
  if (options_.on_token && !options_.on_token(id)) {
    end("callback");
  } else if (std::find(options_.stop_ids.begin(), options_.stop_ids.end(), id) != options_.stop_ids.end()) {
    end("stop_id");
  } else if (static_cast<int64_t>(out_.ids.size()) >= options_.max_new_tokens) {
    done_ = true;
  }
  return done_;
}

void RowDecoder::end(const std::string& reason) {
  if (done_) return;
  out_.stop_reason = reason;
  done_ = true;
}

}  // namespace icae
