#include "worker/worker.hpp"
