#include "backend/registry.h"

#include "core/check.h"
#include <algorithm>

namespace curaclip {

namespace {
std::vector<BackendFactory>& factories() {
    static std::vector<BackendFactory> list;
    return list;
}
}  // namespace

bool register_backend(BackendFactory factory) {
    auto& list = factories();
    // Listed by listing_order, then in registration order (static initializers run in
    // an unspecified order across files: the order must not depend on it).
    auto at = std::upper_bound(list.begin(), list.end(), factory.listing_order,
                               [](int order, const BackendFactory& f) { return order < f.listing_order; });
    list.insert(at, std::move(factory));
    return true;
}

const std::vector<BackendFactory>& registered_backends() { return factories(); }

std::unique_ptr<Backend> make_backend(const std::string& name) {
    std::string names;
    for (const auto& f : factories()) {
        if (f.name == name) {
            const std::string why = f.unavailable_reason();
            CC_CHECK(why.empty(), "backend '", name, "' cannot run here: ", why);
            return f.create();
        }
        names += (names.empty() ? "" : ", ") + f.name;
    }
    CC_FAIL("unknown backend '", name, "' (compiled in: ", names, ")");
}

}  // namespace curaclip
