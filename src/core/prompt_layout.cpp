// The decoder prefixes shared by training and inference; see the header.
#include "icae/core/prompt_layout.h"

#include "icae/tokenizer/chat_template.h"
#include "icae/tokenizer/tokenizer.h"
#include "icae/util/error.h"

namespace icae {

int64_t slot_count(const IcaeConfig& config, int64_t context_length, double rate) {
  return plan_segments(context_length, config.mem_size, rate > 0 ? rate : config.compression_rate).num_segments *
         config.mem_size;
}

std::vector<int64_t> ae_prefix(const Icae& icae, int64_t num_slots) {
  std::vector<int64_t> ids(num_slots, icae.ids().mem_first);
  ids.push_back(icae.ids().ae);
  return ids;
}

namespace {
std::vector<int64_t> encode_special(const tok::Tokenizer& t, const std::string& text) {
  tok::EncodeOptions e;
  e.parse_special = true;
  std::vector<int64_t> out;
  for (auto id : t.encode(text, e)) out.push_back(id);
  return out;
}
}  // namespace

FtTemplate make_ft_template(const std::string& name, const tok::Tokenizer& tokenizer, const std::string& system) {
  FtTemplate t;
  t.name = name;
  if (name == "none") {
    if (tokenizer.bos_id() >= 0) t.before.push_back(tokenizer.bos_id());
    return t;
  }
  if (name == "mistral") {
    // Exactly the released ICAE v2 layout: [BOS, "[INST]"] slots FT prompt ["[/INST]"].
    ICAE_CHECK(tokenizer.bos_id() >= 0, ErrorKind::Mismatch, "FT template 'mistral' needs a tokenizer with a BOS token");
    t.before.push_back(tokenizer.bos_id());
    for (auto id : encode_special(tokenizer, "[INST]")) t.before.push_back(id);
    t.after = encode_special(tokenizer, "[/INST]");
    return t;
  }
  // Render the family's template around a marker and cut there: the user turn becomes
  // [slots, FT, prompt]. Spaces next to the marker go with the prompt's own tokens.
  const std::string marker = "\x01ICAE_USER\x01";
  std::vector<tok::ChatMessage> messages;
  if (!system.empty()) messages.push_back({"system", system});
  messages.push_back({"user", marker});
  const std::string rendered = tok::render_chat(tok::parse_chat_format(name), messages);
  const size_t at = rendered.find(marker);
  ICAE_CHECK(at != std::string::npos, ErrorKind::Internal, "chat template lost the user turn");
  std::string before = rendered.substr(0, at), after = rendered.substr(at + marker.size());
  while (!before.empty() && before.back() == ' ') before.pop_back();
  while (!after.empty() && after.front() == ' ') after.erase(0, 1);
  t.before = encode_special(tokenizer, before);
  t.after = encode_special(tokenizer, after);
  return t;
}

std::vector<int64_t> ft_prefix(const Icae& icae, const FtTemplate& tmpl, int64_t num_slots,
                               const std::vector<int64_t>& prompt) {
  std::vector<int64_t> ids = tmpl.before;
  ids.insert(ids.end(), num_slots, icae.ids().mem_first);
  ids.push_back(icae.ids().ft);
  ids.insert(ids.end(), prompt.begin(), prompt.end());
  ids.insert(ids.end(), tmpl.after.begin(), tmpl.after.end());
  return ids;
}

}  // namespace icae
