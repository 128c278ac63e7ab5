// Load -> compress -> answer, with the public API (icae/api.h).
//   icae_example_ask MODEL ADAPTER CONTEXT_FILE "question" [more questions...]
// Compresses the file once into memory slots, saves them beside it, and answers every
// question from the slots (streaming the answer).
#include <icae/api.h>

#include <fstream>
#include <iostream>
#include <sstream>

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: " << argv[0] << " MODEL ADAPTER CONTEXT_FILE QUESTION...\n";
    return 2;
  }
  try {
    icae::Session session = icae::open_session(argv[1], argv[2]);

    std::ifstream in(argv[3]);
    if (!in) throw icae::Error(icae::ErrorKind::Io, std::string(argv[3]) + ": cannot open");
    std::stringstream text;
    text << in.rdbuf();
    icae::Slots slots = session.compress_slots(text.str());  // keep them, save them, send them
    icae::save_slots(std::string(argv[3]) + ".slots.safetensors", slots);

    for (int i = 4; i < argc; ++i) {
      std::cout << "Q: " << argv[i] << "\nA: ";
      icae::StreamPrinter printer(*session.model().tokenizer);
      session.answer(slots, argv[i], [&](int64_t id) {
        std::cout << printer.push(id) << std::flush;
        return true;
      });
      std::cout << "\n";
    }
  } catch (const icae::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return e.exit_code();
  }
  return 0;
}
