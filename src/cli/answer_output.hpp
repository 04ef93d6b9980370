// The answer's text as it streams to stdout. It is the user's content, so a pipe or a file gets it
// unchanged; a terminal does not get control characters other than \n and \t (a model or a
// malicious worker could otherwise clear the screen, move the cursor, set the title or the
// clipboard with escape sequences). Documented in docs/user-guide.md.
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
        if ((u >= 0x20 && u != 0x7F) || ch == '\n' || ch == '\t') buf_ += ch;
      }
      piece = buf_;
    }
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  }

 private:
  bool tty_;
  std::string buf_;
};

}  // namespace qmesh::cli
