#include "model/checkpoint.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/check.h"
#include "io/durable_file.h"
#include "io/hdf5_file.h"

namespace fs = std::filesystem;

namespace curaclip {

namespace {
constexpr int64_t kFormatVersion = 1;
constexpr size_t kNamedTensors = 10;        // non-finite tensors named in a message, then a count
constexpr size_t kMaxPointerBytes = 4096;   // a `latest` longer than this is not a pointer

std::vector<int64_t> h5_shape(const Shape& s) {
    if (s.ndim == 1 && s[0] == 1) return {};  // [1] device scalars are 0-d in the file, as in torch
    return std::vector<int64_t>(s.d.begin(), s.d.begin() + s.ndim);
}

// The tensors holding NaN or Inf, as "params/x (1 NaN, 2 Inf of 64 values)".
class NonFinite {
public:
    void check(const std::string& name, const std::vector<float>& v) {
        size_t nan = 0, inf = 0;
        for (float x : v) {
            nan += std::isnan(x) ? 1 : 0;
            inf += std::isinf(x) ? 1 : 0;
        }
        if (nan + inf == 0) return;
        if (named_.size() < kNamedTensors) {
            std::string s = name + " (";
            if (nan) s += std::to_string(nan) + " NaN";
            if (inf) s += std::string(nan ? ", " : "") + std::to_string(inf) + " Inf";
            named_.push_back(s + " of " + std::to_string(v.size()) + " values)");
        }
        ++count_;
    }
    bool any() const { return count_ > 0; }
    std::string str() const {
        std::string s = std::to_string(count_) + (count_ == 1 ? " tensor: " : " tensors: ");
        for (size_t i = 0; i < named_.size(); ++i) s += (i ? ", " : "") + named_[i];
        if (count_ > named_.size()) s += ", and " + std::to_string(count_ - named_.size()) + " more";
        return s;
    }

private:
    std::vector<std::string> named_;
    size_t count_ = 0;
};

void write_host(H5File& f, const std::string& name, const std::vector<float>& host, const Shape& shape,
                NonFinite& bad) {
    bad.check(name, host);
    f.write_f32(name, host.data(), h5_shape(shape));
}

void write_tensor(H5File& f, const std::string& name, Backend& be, Tensor t, const Shape& shape, NonFinite& bad) {
    std::vector<float> host(size_t(t.numel()));
    be.download(host.data(), t);
    write_host(f, name, host, shape, bad);
}

std::vector<float> read_host(const H5File& f, const std::string& name, const Shape& shape, NonFinite& bad) {
    std::vector<int64_t> dims;
    std::vector<float> host = f.read_f32(name, &dims);
    CC_REQUIRE(dims == h5_shape(shape), f.path(), ": '", name, "' has shape ", Shape::from(dims).str(),
               ", the model expects ", shape.str());
    bad.check(name, host);
    return host;
}

void read_tensor(const H5File& f, const std::string& name, Backend& be, Tensor t, const Shape& shape,
                 NonFinite& bad) {
    const std::vector<float> host = read_host(f, name, shape, bad);
    be.upload(t, host.data());
}

// "step_<digits>.h5.tmp": a temporary of this writer (checkpoint_name + ".tmp").
bool is_checkpoint_tmp(const std::string& n) {
    const std::string head = "step_", tail = ".h5.tmp";
    if (n.size() <= head.size() + tail.size() || n.compare(0, head.size(), head) != 0 ||
        n.compare(n.size() - tail.size(), tail.size(), tail) != 0)
        return false;
    for (size_t i = head.size(); i < n.size() - tail.size(); ++i)
        if (n[i] < '0' || n[i] > '9') return false;
    return true;
}

// Removes what a killed earlier save left behind in dir: only regular files with
// the names this writer gives its temporaries.
void remove_stale_temporaries(const std::string& dir) {
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string n = it->path().filename().string();
        std::error_code ec2;
        if ((n == "latest.tmp" || is_checkpoint_tmp(n)) && it->is_regular_file(ec2)) fs::remove(it->path(), ec2);
    }
}

// Up to 80 bytes of `s`, printable ASCII as is, the rest as \n, \r, \t, \0, \xHH.
// The whole checkpoint (parameters, moments, attributes) into an in-memory file.
void fill_checkpoint(H5File& f, ParameterSet& params, const CheckpointState& state) {
    Backend& be = params.backend();
    NonFinite bad;
    for (size_t i = 0; i < params.size(); ++i) {
        const Parameter& p = params[i];
        // At full precision: the fp32 master of a bf16 parameter (ParameterSet::values_to_host).
        const std::vector<double> v = params.values_to_host(i);
        write_host(f, "params/" + p.name, std::vector<float>(v.begin(), v.end()), p.shape, bad);
        write_tensor(f, "optimizer/adam_m/" + p.name, be, p.adam_m, p.shape, bad);
        write_tensor(f, "optimizer/adam_v/" + p.name, be, p.adam_v, p.shape, bad);
    }
    CC_REQUIRE(!bad.any(), "the model holds non-finite values (NaN or Inf) in ", bad.str(),
               "; such a checkpoint could not be loaded again");
    f.set_attr("/", "format_version", kFormatVersion);
    f.set_attr("/", "step", state.step);
    if (state.adam_step_offset > 0) f.set_attr("/", "adam_step_offset", state.adam_step_offset);
    f.set_attr("/", "loader_epoch", state.loader_epoch);
    f.set_attr("/", "loader_step", state.loader_step);
    f.set_attr("/", "seed", int64_t(state.seed));
    f.set_attr("/", "config", state.config);
    f.set_attr("/", "model_config", state.model_config);
    if (!state.tokenizer_id.empty()) f.set_attr("/", "tokenizer_id", state.tokenizer_id);
    if (state.train_rows >= 0) f.set_attr("/", "train_rows", state.train_rows);
    if (!state.train_fingerprint.empty()) f.set_attr("/", "train_fingerprint", state.train_fingerprint);
}

std::string escaped(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size() && i < 80; ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        char buf[8];
        if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c == '\t') out += "\\t";
        else if (c == 0) out += "\\0";
        else if (c == '"' || c == '\\') out += std::string("\\") + char(c);
        else if (c >= 0x20 && c < 0x7f) out += char(c);
        else {
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    if (s.size() > 80) out += "...";
    return out;
}

// What is wrong with the contents of a `latest` pointer ("" if nothing): it must be
// one line holding a file name (no '/', no control characters), newline optional.
std::string pointer_problem(const std::string& bytes, std::string* name) {
    if (bytes.empty()) return "it is empty";
    if (bytes.size() > kMaxPointerBytes) return "it is longer than " + std::to_string(kMaxPointerBytes) + " bytes";
    std::string s = bytes;
    if (s.back() == '\n') s.pop_back();
    if (!s.empty() && s.back() == '\r') s.pop_back();
    if (s.empty()) return "it holds an empty line";
    for (size_t i = 0; i < s.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c == 0) return "it holds a NUL byte at offset " + std::to_string(i);
        if (c == '\n') return "it holds more than one line";
        if (c < 0x20 || c == 0x7f) return "it holds a control character at offset " + std::to_string(i);
        if (c == '/') return "it names a path, not a file name";
    }
    if (s == "." || s == "..") return "it names a directory";
    *name = s;
    return "";
}

// Reads the `latest` pointer: the file name it holds (see resolve_checkpoint).
std::string read_pointer(const fs::path& pointer) {
    std::ifstream in(pointer, std::ios::binary);
    CC_REQUIRE(in.good(), "no checkpoint pointer ", pointer.string(),
               " (no checkpoint was written in that folder: nothing to resume or load)");
    std::string bytes(kMaxPointerBytes + 1, '\0');
    in.read(bytes.data(), std::streamsize(bytes.size()));
    bytes.resize(size_t(in.gcount()));
    CC_REQUIRE(!in.bad(), "cannot read checkpoint pointer ", pointer.string());
    std::string name;
    const std::string problem = pointer_problem(bytes, &name);
    CC_REQUIRE(problem.empty(), "checkpoint pointer ", pointer.string(),
               " should hold one line naming a checkpoint file in ", pointer.parent_path().string(),
               " (such as ", checkpoint_name(1000), "), but ", problem, ": \"", escaped(bytes), "\" (",
               bytes.size(), " bytes; damaged? point it at a checkpoint of the folder, or resume from a file)");
    return name;
}

// What `latest` names before a save, for the message of a failed save.
std::string latest_before(const std::string& dir) {
    const fs::path pointer = fs::path(dir) / "latest";
    std::error_code ec;
    if (!fs::exists(pointer, ec)) return "there is no earlier checkpoint in " + dir;
    try {
        return pointer.string() + " still names " + read_pointer(pointer);
    } catch (const Error&) {
        return pointer.string() + " is as it was";
    }
}

void rename_or_throw(const std::string& from, const std::string& to) {
    CC_REQUIRE(std::rename(from.c_str(), to.c_str()) == 0, "cannot rename ", from, " to ", to, ": ",
               io::describe_errno(errno));
}
}  // namespace

std::string checkpoint_name(int64_t step) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "step_%08lld.h5", (long long)step);
    return buf;
}

void save_checkpoint(const std::string& dir, const std::string& name, ParameterSet& params,
                     const CheckpointState& state) {
    CC_CHECK(!name.empty() && name.find('/') == std::string::npos, "checkpoint name '", name, "' is not a file name");
    const std::string target = (fs::path(dir) / name).string();
    const std::string tmp = target + ".tmp";
    const std::string latest = (fs::path(dir) / "latest").string();
    const std::string latest_tmp = latest + ".tmp";
    remove_stale_temporaries(dir);
    const std::string before = latest_before(dir);
    bool renamed = false;
    try {
        {
            H5File f(target, H5File::Mode::in_memory);
            fill_checkpoint(f, params, state);
            f.write_image(tmp);
        }
        const std::string line = name + "\n";
        io::write_new_file(latest_tmp, line.data(), line.size());
        // Every byte is on disk and synced; what remains are renames, which need no space.
        rename_or_throw(tmp, target);
        renamed = true;
        rename_or_throw(latest_tmp, latest);
    } catch (const std::exception& e) {  // Error, and bad_alloc of a model too large for memory
        ::unlink(tmp.c_str());
        ::unlink(latest_tmp.c_str());
        if (renamed)
            CC_USER_FAIL("checkpoint ", target, " was written, but ", latest, " could not be pointed at it: ", e.what(),
                         "; ", before);
        CC_USER_FAIL("checkpoint ", target, " not written: ", e.what(), "; ", before);
    }
    io::fsync_path(dir, true);  // makes both renames durable
}

bool is_safetensors_path(const std::string& path) {
    const std::string ext = ".safetensors";
    return path.size() > ext.size() && path.compare(path.size() - ext.size(), ext.size(), ext) == 0;
}

CheckpointState load_checkpoint(const std::string& path, ParameterSet& params, bool with_optimizer) {
    CC_CHECK(!is_safetensors_path(path), "safetensors files are read by interop/weights_file.h: ", path);
    H5File f(path, H5File::Mode::read);
    const int64_t version = f.attr_i64("/", "format_version");
    CC_REQUIRE(version == kFormatVersion, path, ": checkpoint format version ", version, ", this build reads ",
               kFormatVersion);
    Backend& be = params.backend();
    NonFinite bad;
    for (size_t i = 0; i < params.size(); ++i) {
        Parameter& p = params[i];
        CC_REQUIRE(f.exists("params/" + p.name), path, ": no parameter '", p.name,
                   "' (checkpoint of another model shape?)");
        params.set_value(i, read_host(f, "params/" + p.name, p.shape, bad).data());
        if (with_optimizer) {
            read_tensor(f, "optimizer/adam_m/" + p.name, be, p.adam_m, p.shape, bad);
            read_tensor(f, "optimizer/adam_v/" + p.name, be, p.adam_v, p.shape, bad);
        }
    }
    CC_REQUIRE(!bad.any(), path, ": the checkpoint holds non-finite values (NaN or Inf) in ", bad.str(),
               "; refusing to use it (the run that wrote it had diverged: take an earlier checkpoint)");
    CheckpointState s;
    s.step = f.attr_i64("/", "step");
    if (f.has_attr("/", "adam_step_offset")) s.adam_step_offset = f.attr_i64("/", "adam_step_offset");
    s.loader_epoch = f.attr_i64("/", "loader_epoch");
    s.loader_step = f.attr_i64("/", "loader_step");
    s.seed = uint64_t(f.attr_i64("/", "seed"));
    s.config = f.attr_string("/", "config");
    s.model_config = f.attr_string("/", "model_config");
    if (f.has_attr("/", "tokenizer_id")) s.tokenizer_id = f.attr_string("/", "tokenizer_id");
    if (f.has_attr("/", "train_rows")) s.train_rows = f.attr_i64("/", "train_rows");
    if (f.has_attr("/", "train_fingerprint")) s.train_fingerprint = f.attr_string("/", "train_fingerprint");
    return s;
}

CheckpointState checkpoint_provenance(const std::string& path) {
    CheckpointState s;
    if (is_safetensors_path(path)) return s;
    const H5File f(path, H5File::Mode::read);
    if (f.has_attr("/", "tokenizer_id")) s.tokenizer_id = f.attr_string("/", "tokenizer_id");
    if (f.has_attr("/", "train_rows")) s.train_rows = f.attr_i64("/", "train_rows");
    if (f.has_attr("/", "train_fingerprint")) s.train_fingerprint = f.attr_string("/", "train_fingerprint");
    return s;
}

void require_checkpoint_tokenizer(const std::string& checkpoint, const std::string& what,
                                  const std::string& data_path, const std::string& data_tokenizer_id) {
    const std::string mine = checkpoint_provenance(checkpoint).tokenizer_id;
    CC_REQUIRE(mine.empty() || data_tokenizer_id.empty() || mine == data_tokenizer_id, what, " ", checkpoint,
               " was trained on token ids of tokenizer ", mine, ", but ", data_path, " was tokenized by tokenizer ",
               data_tokenizer_id,
               ": the same ids would be other words to this model. Prepare the data with the model's tokenizer "
               "(prep --tokenizer <the run's data.tokenizer file>), or use a model trained on this data's tokenizer");
}

ModelConfig checkpoint_model_config(const std::string& path) {
    CC_CHECK(!is_safetensors_path(path), "safetensors files are read by interop/weights_file.h: ", path);
    const H5File f(path, H5File::Mode::read);
    CC_REQUIRE(f.has_attr("/", "model_config"), path, ": no model_config attribute (not a curaclip checkpoint?)");
    return model_config_from_ini(f.attr_string("/", "model_config"), path);
}

std::vector<float> checkpoint_parameter(const std::string& path, const std::string& name) {
    CC_CHECK(!is_safetensors_path(path), "safetensors files are read by interop/weights_file.h: ", path);
    const H5File f(path, H5File::Mode::read);
    if (!f.exists("params/" + name)) return {};
    return f.read_f32("params/" + name);
}

void write_checkpoint_file(const std::string& path, ParameterSet& params, const CheckpointState& state) {
    CC_REQUIRE(!fs::exists(path), path, " exists already; not replacing it (choose another --out or remove it)");
    const std::string tmp = path + ".tmp";
    ::unlink(tmp.c_str());
    try {
        H5File f(path, H5File::Mode::in_memory);
        fill_checkpoint(f, params, state);
        f.write_image(tmp);
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
    io::publish_new_file(tmp, path);
}

std::string resolve_checkpoint(const std::string& run_dir, const std::string& which) {
    if (which != "latest") {
        CC_REQUIRE(fs::exists(which), "checkpoint not found: ", which);
        return which;
    }
    const fs::path pointer = fs::path(run_dir) / "latest";
    const fs::path file = fs::path(run_dir) / read_pointer(pointer);
    CC_REQUIRE(fs::exists(file), pointer.string(), " names ", file.string(), ", which does not exist");
    return file.string();
}

}  // namespace curaclip
