// The answer's text as it streams to stdout. It is the user's content, so a pipe or a file gets it
// unchanged; a terminal does not get control characters other than \n and \t, C1 controls
// (U+0080-U+009F, UTF-8 C2 80-9F) included (a model or a malicious worker could otherwise clear
// the screen, move the cursor, set the title or the clipboard with escape sequences).
// Documented in docs/user-guide.md.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <string>
#include <string_view>

namespace qmesh::cli {

class AnswerOutput {
 public:
  AnswerOutput() : tty_(isatty(STDOUT_FILENO) != 0) {}

  void write(std::string_view piece) {
    if (tty_) {
      buf_.clear();
      for (char ch : piece) {
        const auto u = static_cast<unsigned char>(ch);
        if (pending_c2_) {  // a C2 lead byte ended the previous piece or byte
          pending_c2_ = false;
          if (u >= 0x80 && u <= 0x9F) continue;
          buf_ += '\xC2';
        }
        if (u == 0xC2) {
          pending_c2_ = true;
          continue;
        }
        if ((u >= 0x20 && u != 0x7F) || ch == '\n' || ch == '\t') buf_ += ch;
      }
      piece = buf_;
    }
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  }

 private:
  bool tty_;
  bool pending_c2_ = false;
  std::string buf_;
};

}  // namespace qmesh::cli
