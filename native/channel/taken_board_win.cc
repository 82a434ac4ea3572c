// taken_board.h on Windows: no board yet (a named file mapping would do; not needed for the
// measured goal), so the worker sends Taken for every request, as before the board existed.
#include "taken_board.h"

namespace isapi::channel {

TakenBoard::~TakenBoard() = default;
bool TakenBoard::create(NativeHandle&, std::string&) { return false; }
bool TakenBoard::open(const std::string&) { return false; }

}  // namespace isapi::channel
