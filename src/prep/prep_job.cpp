#include "prep/prep_job.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/check.h"
#include "io/dataset_join.h"
#include "io/dataset_writer.h"
#include "io/durable_file.h"
#include "io/hdf5_file.h"
#include "io/shard_writer.h"
#include "mpi/communicator.h"
#include "prep/caption.h"
#include "tokenizer/bpe_tokenizer.h"

namespace curaclip::prep {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string shard_name(size_t u) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "part-%05zu", u);
    return buf;
}

// A field of the rejects file: tabs, newlines and backslashes escaped.
std::string tsv_field(const std::string& s) {
    std::string o;
    o.reserve(s.size());
    for (char c : s) {
        if (c == '\t') o += "\\t";
        else if (c == '\n') o += "\\n";
        else if (c == '\r') o += "\\r";
        else if (c == '\\') o += "\\\\";
        else o += c;
    }
    return o;
}

uint64_t fnv1a(const std::string& s) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) {
        h ^= c;
        h *= 1099511628211ull;
    }
    return h;
}

std::vector<std::string> read_lines(const std::string& path, const char* option) {
    std::ifstream f(path);
    CC_REQUIRE(f.good(), option, ": cannot read ", path);
    std::vector<std::string> out;
    std::string line;
    while (std::getline(f, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) continue;
        out.push_back(line);
    }
    CC_REQUIRE(!out.empty(), option, ": ", path, " holds no names");
    return out;
}

// Everything that shapes a shard's bytes besides its input: a shard made with
// other options must not be mixed into this dataset.
std::string options_signature(const PrepOptions& o, const std::string& tokenizer_id) {
    std::ostringstream s;
    s << "kind=" << o.kind << " image_size=" << o.image.size << " channels=" << o.image.channels
      << " resize=" << resize_mode_name(o.image.resize) << " max_pixels=" << o.image.max_pixels
      << " context=" << o.context << " tokenizer=" << tokenizer_id;
    if (o.kind == "webdataset") s << " caption_key=" << o.source.caption_key;
    if (o.kind == "csv" || o.kind == "tsv" || o.kind == "jsonl")
        s << " img_key=" << o.source.img_key << " caption_col=" << o.source.caption_col
          << " label_col=" << o.source.label_col << " rows_per_shard=" << o.source.rows_per_unit;
    if (o.kind == "folder")
        s << " caption_template=" << o.source.caption_template << " rows_per_shard=" << o.source.rows_per_unit;
    return s.str();
}

struct Counts {
    // [0] read, [1] kept, [2 + r] rejected for reason r, then [2 + R] units converted now,
    // [3 + R] units skipped (finished earlier), [4 + R] failed ranks
    static constexpr size_t kRead = 0, kKept = 1, kReason = 2, kConverted = 2 + kNumRejectReasons,
                            kSkipped = kConverted + 1, kFailed = kSkipped + 1, kSize = kFailed + 1;
    int64_t v[kSize] = {};
    int64_t rejected() const {
        int64_t s = 0;
        for (int r = 0; r < kNumRejectReasons; ++r) s += v[kReason + size_t(r)];
        return s;
    }
};

std::string reasons_text(const Counts& c) {
    std::string s;
    for (int r = 0; r < kNumRejectReasons; ++r) {
        const int64_t n = c.v[Counts::kReason + size_t(r)];
        if (n == 0) continue;
        if (!s.empty()) s += ", ";
        s += std::to_string(n) + " " + reject_reason_name(RejectReason(r));
    }
    return s.empty() ? "none" : s;
}

std::string duration_text(double s) {
    char buf[64];
    if (s < 90) std::snprintf(buf, sizeof buf, "%.0fs", s);
    else if (s < 5400) std::snprintf(buf, sizeof buf, "%.0fm%02.0fs", std::floor(s / 60), std::fmod(s, 60));
    else std::snprintf(buf, sizeof buf, "%.0fh%02.0fm", std::floor(s / 3600), std::floor(std::fmod(s, 3600) / 60));
    return buf;
}

// Runs f on rank 0; every rank learns whether it failed, and the others throw too
// (so no rank waits in a collective for a rank that has given up).
template <typename F>
void on_rank0(const Communicator& comm, const char* what, F&& f) {
    int32_t failed = 0;
    std::string msg;
    if (comm.rank() == 0) {
        try {
            f();
        } catch (const std::exception& e) {
            failed = 1;
            msg = e.what();
        }
    }
    comm.broadcast(&failed, 1, 0);
    if (failed) {
        if (comm.rank() == 0) throw Error(msg);
        CC_USER_FAIL("prep: rank 0 failed while ", what, " (its message says why)");
    }
}

BpeTokenizer load_tokenizer_file(const std::string& path) {
    // OpenAI's bpe_simple_vocab_16e6.txt holds 262,144 merge lines of which CLIP
    // uses the first 48,894; our own files hold exactly the merges they use.
    std::ifstream f(path, std::ios::binary);
    CC_REQUIRE(f.good(), "--tokenizer: cannot open ", path);
    char magic[2] = {};
    f.read(magic, 2);
    const bool gz = f.gcount() == 2 && uint8_t(magic[0]) == 0x1F && uint8_t(magic[1]) == 0x8B;
    if (gz) return BpeTokenizer::load_clip_merges(path);
    f.seekg(0);
    int64_t lines = 0;
    std::string line;
    while (std::getline(f, line)) ++lines;
    return lines - 1 > BpeTokenizer::kClipNumMerges ? BpeTokenizer::load_clip_merges(path) : BpeTokenizer::load(path);
}

void check_prep_options(const PrepOptions& o) {
    CC_REQUIRE(!o.out_dir.empty(), "prep: --out DIR is required");
    CC_REQUIRE(!o.name.empty() && o.name.find('/') == std::string::npos, "prep: --name '", o.name,
             "' must be a plain file name");
    CC_REQUIRE(o.context >= 2 && o.context <= 1024, "prep: --context ", o.context, " out of range [2, 1024]");
    CC_REQUIRE(o.image.size >= 8 && o.image.size <= 4096, "prep: --image-size ", o.image.size,
             " out of range [8, 4096]");
    CC_REQUIRE(o.image.channels == 1 || o.image.channels == 3, "prep: --channels ", o.image.channels,
             " must be 1 or 3");
    CC_REQUIRE(o.image.max_pixels > 0, "prep: --max-pixels must be positive");
    CC_REQUIRE(o.max_reject >= 0 && o.max_reject <= 1, "prep: --max-reject ", o.max_reject, " must be in [0, 1]");
    CC_REQUIRE(o.bpe_sample > 0, "prep: --bpe-sample must be positive");
}

void save_tokenizer(const BpeTokenizer& t, const std::string& path) {
    ::unlink((path + ".tmp").c_str());
    t.save(path + ".tmp");
    io::publish_new_file(path + ".tmp", path);
}

// Rank 0: the output folder's tokenizer.bpe, given (--tokenizer), left by an earlier run
// of this folder, or trained on the first --bpe-sample usable captions.
void prepare_tokenizer(const PrepOptions& o, Source& src, const std::string& path, bool talk) {
    const bool have = io::path_exists(path);
    if (!o.tokenizer.empty()) {
        const BpeTokenizer given = load_tokenizer_file(o.tokenizer);
        if (have) {
            const BpeTokenizer there = BpeTokenizer::load(path);
            CC_REQUIRE(there.id() == given.id(), "prep: ", path, " (tokenizer ", there.id_hex(),
                     ") is not the --tokenizer ", o.tokenizer, " (", given.id_hex(),
                     "): one output folder holds one tokenizer");
        } else {
            save_tokenizer(given, path);
        }
        if (talk) std::printf("prep: tokenizer %s from %s\n", given.id_hex().c_str(), o.tokenizer.c_str());
        return;
    }
    if (have) {
        if (talk) std::printf("prep: reusing %s\n", path.c_str());
        return;
    }
    const auto tt = Clock::now();
    std::vector<std::string> caps;
    for (size_t u = 0; u < src.num_units() && int64_t(caps.size()) < o.bpe_sample; ++u)
        src.read_unit(u, [&](RawSample&& s) {
            if (s.reject || int64_t(caps.size()) >= o.bpe_sample) return;
            CaptionResult c = normalize_caption(s.caption);
            if (!c.reject) caps.push_back(std::move(c.text));
        }, /*captions_only=*/true);
    CC_REQUIRE(!caps.empty(), "prep: no usable caption found to train a tokenizer on (", src.describe(), ")");
    const BpeTokenizer t = BpeTokenizer::train(caps, o.vocab);
    save_tokenizer(t, path);
    if (talk)
        std::printf("prep: trained a BPE tokenizer (%d ids, id %s) on %zu captions in %.1fs -> %s\n", t.vocab_size(),
                    t.id_hex().c_str(), caps.size(), since(tt), path.c_str());
}

// What converting one input unit needs, the same on every rank.
struct UnitContext {
    const PrepOptions& o;
    Source& src;
    const BpeTokenizer& tok;
    const std::vector<std::string>& classnames;
    io::ShardSpec spec;
    std::string signature;  // options_signature: a finished shard must carry it
    std::string shard_dir;
};

// The counts of a shard finished by an earlier run, after checking that it was made
// from the same input unit with the same options.
Counts finished_shard_counts(const UnitContext& c, size_t u, const std::string& shard) {
    Counts mine;
    H5File f(shard, H5File::Mode::read);
    const std::string sig = f.has_attr("/", "prep_options") ? f.attr_string("/", "prep_options") : "";
    const std::string in = f.has_attr("/", "input") ? f.attr_string("/", "input") : "";
    CC_REQUIRE(sig == c.signature && in == c.src.unit_name(u), "prep: ", shard, " was made from other input or options (",
             in, "; ", sig, ") than this run (", c.src.unit_name(u), "; ", c.signature,
             "): use another --out or --name");
    mine.v[Counts::kRead] = f.attr_i64("/", "samples_read");
    mine.v[Counts::kKept] = f.attr_i64("/", "samples_kept");
    for (int r = 0; r < kNumRejectReasons; ++r) {
        const std::string a = std::string("rejected_") + reject_reason_name(RejectReason(r));
        if (f.has_attr("/", a)) mine.v[Counts::kReason + size_t(r)] = f.attr_i64("/", a);
    }
    mine.v[Counts::kSkipped] = 1;
    return mine;
}

// Converts unit u into its shard and rejects list (each written to .tmp, published when
// complete): every sample decoded, normalized, tokenized, or rejected with its reason.
Counts convert_unit(const UnitContext& c, size_t u, const std::string& shard, const std::string& rej) {
    Counts mine;
    // Leftovers of a run killed inside this unit are ours to remove.
    ::unlink((shard + ".tmp").c_str());
    ::unlink((rej + ".tmp").c_str());
    ::unlink(rej.c_str());
    io::ShardWriter w(shard, c.spec);
    std::ofstream rejects(rej + ".tmp", std::ios::binary | std::ios::trunc);
    CC_REQUIRE(rejects.good(), "cannot create ", rej, ".tmp");
    const PrepOptions& o = c.o;
    std::vector<uint8_t> pixels(size_t(o.image.size) * size_t(o.image.size) * size_t(o.image.channels));
    std::vector<int32_t> ids(size_t(o.context));
    const std::string unit = c.src.unit_name(u);
    auto reject = [&](const RawSample& s, RejectReason r, const std::string& detail) {
        ++mine.v[Counts::kReason + size_t(r)];
        rejects << tsv_field(unit) << '\t' << tsv_field(s.key) << '\t' << reject_reason_name(r) << '\t'
                << tsv_field(detail) << '\n';
    };
    c.src.read_unit(u, [&](RawSample&& s) {
        ++mine.v[Counts::kRead];
        if (s.reject) return reject(s, *s.reject, s.detail);
        const CaptionResult cap = normalize_caption(s.caption);
        if (cap.reject) return reject(s, *cap.reject, cap.detail);
        const DecodeResult d = decode_image(s.image_bytes.data(), s.image_bytes.size(), o.image, pixels.data());
        if (d.reject) return reject(s, *d.reject, s.image_name + ": " + d.detail);
        if (c.spec.labels && !c.classnames.empty() && s.label >= int32_t(c.classnames.size()))
            return reject(s, RejectReason::bad_label,
                          "label " + std::to_string(s.label) + " but only " + std::to_string(c.classnames.size()) +
                              " class names");
        c.tok.encode_into(cap.text, o.context, ids);
        const int64_t image_id = s.group.empty() ? -1 : int64_t(fnv1a(s.group) >> 1);
        w.append(pixels.data(), ids.data(), cap.text, s.key, s.label, image_id);
        ++mine.v[Counts::kKept];
    });
    rejects.close();
    if (rejects.fail()) {
        ::unlink((rej + ".tmp").c_str());
        CC_USER_FAIL("writing ", rej, ".tmp failed (disk full?)");
    }
    io::publish_new_file(rej + ".tmp", rej);
    w.set_attr("prep_options", c.signature);
    w.set_attr("input", unit);
    w.set_attr("tokenizer_id", c.tok.id_hex());
    w.set_attr("sot_id", int64_t(c.tok.sot_id()));
    w.set_attr("eot_id", int64_t(c.tok.eot_id()));
    w.set_attr("source", o.kind + ": " + unit);
    w.set_attr("creation_command", o.creation_command);
    w.set_attr("samples_read", mine.v[Counts::kRead]);
    w.set_attr("samples_kept", mine.v[Counts::kKept]);
    for (int r = 0; r < kNumRejectReasons; ++r)
        w.set_attr(std::string("rejected_") + reject_reason_name(RejectReason(r)), mine.v[Counts::kReason + size_t(r)]);
    w.finish();
    mine.v[Counts::kConverted] = 1;
    return mine;
}

// Unit u on this rank: skipped if finished earlier, else converted. A failure is
// printed and counted (kFailed), never thrown, so that every rank reaches the round's
// all-reduce; the unit's rejects list does not outlive an unfinished shard.
Counts prep_unit(const UnitContext& c, size_t u, int rank) {
    const std::string base = c.shard_dir + "/" + shard_name(u);
    const std::string shard = base + ".h5", rej = base + ".rejects.tsv";
    try {
        return io::path_exists(shard) ? finished_shard_counts(c, u, shard) : convert_unit(c, u, shard, rej);
    } catch (const std::exception& e) {
        if (!io::path_exists(shard)) {
            ::unlink((rej + ".tmp").c_str());
            ::unlink(rej.c_str());
        }
        std::fprintf(stderr, "curaclip prep: error: [rank %d] %s\n", rank, e.what());
        Counts failed;
        failed.v[Counts::kFailed] = 1;
        return failed;
    }
}

// Rank 0: the shards' rejects lists, in unit order, as one file (written to .tmp,
// published when complete).
void join_rejects(const std::string& path, const std::string& shard_dir, size_t units) {
    const std::string tmp = path + ".tmp";
    ::unlink(tmp.c_str());
    try {
        std::ofstream all(tmp, std::ios::binary | std::ios::trunc);
        CC_REQUIRE(all.good(), "cannot create ", tmp);
        all << "# shard\tkey\treason\tdetail\n";
        std::vector<char> buf(1 << 16);
        for (size_t u = 0; u < units; ++u) {
            const std::string rej = shard_dir + "/" + shard_name(u) + ".rejects.tsv";
            std::ifstream in(rej, std::ios::binary);
            CC_REQUIRE(in.good(), "cannot read ", rej);
            while (in.read(buf.data(), std::streamsize(buf.size())) || in.gcount() > 0) all.write(buf.data(), in.gcount());
        }
        all.close();
        CC_REQUIRE(!all.fail(), "writing ", tmp, " failed (disk full?)");
        io::publish_new_file(tmp, path);
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
}

// Rank 0: the shards joined into the dataset, with the run's attributes.
void join_dataset(const UnitContext& c, const PrepSummary& sum, const std::string& shard_dir_rel) {
    ::unlink((sum.dataset_path + ".tmp").c_str());  // left by a join that was killed
    std::vector<io::JoinShard> shards;
    for (size_t u = 0; u < c.src.num_units(); ++u)
        shards.push_back({shard_dir_rel + "/" + shard_name(u) + ".h5", c.src.unit_name(u)});
    io::JoinAttributes a;
    a.classnames = c.classnames;
    a.strings = {{"source", c.src.describe()},
                 {"creation_command", c.o.creation_command},
                 {"prep_options", c.signature},
                 {"rejects_file", c.o.name + ".rejects.tsv"}};
    a.integers = {{"sot_id", c.tok.sot_id()}, {"eot_id", c.tok.eot_id()}, {"samples_read", sum.read},
                  {"samples_kept", sum.kept}, {"samples_rejected", sum.rejected}};
    for (int r = 0; r < kNumRejectReasons; ++r)
        a.integers.emplace_back(std::string("rejected_") + reject_reason_name(RejectReason(r)), sum.rejected_by_reason[r]);
    io::join_shards(sum.dataset_path, shards, a);
}

}  // namespace

PrepSummary run_prep(const PrepOptions& o, const Communicator& comm) {
    const auto t0 = Clock::now();
    const bool talk = comm.rank() == 0 && !o.quiet;
    check_prep_options(o);

    PrepSummary sum;
    const std::string dir = o.out_dir;
    const std::string shard_dir_rel = o.name + "-shards";
    const std::string shard_dir = dir + "/" + shard_dir_rel;
    sum.dataset_path = dir + "/" + o.name + ".h5";
    sum.rejects_path = dir + "/" + o.name + ".rejects.tsv";
    sum.tokenizer_path = dir + "/tokenizer.bpe";
    CC_REQUIRE(!io::path_exists(sum.dataset_path), "prep: ", sum.dataset_path,
             " exists already: this dataset is prepared (choose another --out or --name, or delete it)");
    CC_REQUIRE(!io::path_exists(sum.rejects_path), "prep: ", sum.rejects_path,
             " exists but ", sum.dataset_path, " does not: delete it (left by an interrupted join)");

    // Every rank builds the same unit list.
    SourceOptions so = o.source;
    so.warn = comm.rank() == 0;
    const std::unique_ptr<Source> src = make_source(o.kind, o.inputs, so);
    const size_t U = src->num_units();
    CC_REQUIRE(U > 0, "prep: the source has no input (", src->describe(), ")");
    sum.units = int64_t(U);
    std::vector<std::string> classnames = src->classnames();
    if (classnames.empty() && !o.source.classnames_file.empty())
        classnames = read_lines(o.source.classnames_file, "--classnames");

    on_rank0(comm, "preparing the tokenizer", [&] {
        io::make_directories(shard_dir, "--out");
        prepare_tokenizer(o, *src, sum.tokenizer_path, talk);
    });
    const BpeTokenizer tok = BpeTokenizer::load(sum.tokenizer_path);
    sum.tokenizer_id = tok.id_hex();
    if (talk)
        std::printf("prep %s: %zu input units (%s) on %d rank%s -> %s\n", o.kind.c_str(), U, src->describe().c_str(),
                    comm.size(), comm.size() > 1 ? "s" : "", sum.dataset_path.c_str());

    init_image_codecs();
    UnitContext ctx{o, *src, tok, classnames, {}, options_signature(o, tok.id_hex()), shard_dir};
    ctx.spec.image_size = o.image.size;
    ctx.spec.channels = o.image.channels;
    ctx.spec.context_length = o.context;
    // /labels whenever the source can carry them (-1 where a sample has none): a
    // webdataset's .cls members are optional per sample.
    ctx.spec.labels = o.kind == "folder" || o.kind == "webdataset" || !o.source.label_col.empty() ||
                      !classnames.empty();
    ctx.spec.image_ids = o.kind == "csv" || o.kind == "tsv" || o.kind == "jsonl";

    // ---- the units, in rounds of P: rank r converts unit round * P + r
    Counts total;
    const auto t_run = Clock::now();
    int64_t done_units = 0, converted_read = 0;
    const size_t P = size_t(comm.size()), rounds = (U + P - 1) / P;
    for (size_t round = 0; round < rounds; ++round) {
        const size_t u = round * P + size_t(comm.rank());
        Counts mine = u < U ? prep_unit(ctx, u, comm.rank()) : Counts{};
        comm.allreduce_sum(mine.v, Counts::kSize);
        CC_REQUIRE(mine.v[Counts::kFailed] == 0, "prep: ", mine.v[Counts::kFailed],
                 " rank(s) failed on an input unit (messages above); finished shards are kept, a rerun resumes");
        for (size_t i = 0; i < Counts::kSize; ++i) total.v[i] += mine.v[i];
        done_units = total.v[Counts::kConverted] + total.v[Counts::kSkipped];
        if (mine.v[Counts::kConverted] > 0) converted_read += mine.v[Counts::kRead];
        const int64_t rejected = total.rejected();
        if (talk) {
            const double el = since(t_run);
            const int64_t conv = total.v[Counts::kConverted];
            const double eta = conv > 0 ? el / double(conv) * double(int64_t(U) - done_units) : 0.0;
            std::printf("prep: %lld/%zu shards, %lld samples (%lld kept, %lld rejected: %s), %.0f samples/s, ETA %s\n",
                        (long long)done_units, U, (long long)total.v[Counts::kRead], (long long)total.v[Counts::kKept],
                        (long long)rejected, reasons_text(total).c_str(), el > 0 ? double(converted_read) / el : 0.0,
                        duration_text(eta).c_str());
            std::fflush(stdout);
        }
        // Hopeless (a wrong --caption-key, the wrong folder): stop early.
        const int64_t read = total.v[Counts::kRead];
        CC_REQUIRE(!(read >= 1000 && double(rejected) > std::max(0.5, o.max_reject) * double(read)), "prep: ",
                 rejected, " of the first ", read, " samples were rejected (", reasons_text(total),
                 "): stopping early; see ", shard_dir, "/*.rejects.tsv (wrong --caption-key or columns?)");
    }

    sum.units_skipped = total.v[Counts::kSkipped];
    sum.read = total.v[Counts::kRead];
    sum.kept = total.v[Counts::kKept];
    sum.rejected = total.rejected();
    for (int r = 0; r < kNumRejectReasons; ++r) sum.rejected_by_reason[r] = total.v[Counts::kReason + size_t(r)];
    CC_REQUIRE(sum.read > 0, "prep: the source holds no samples (", src->describe(), ")");
    CC_REQUIRE(double(sum.rejected) <= o.max_reject * double(sum.read), "prep: ", sum.rejected, " of ", sum.read,
             " samples rejected (", reasons_text(total), "), more than --max-reject ", o.max_reject,
             "; the rejected samples are listed in ", shard_dir,
             "/*.rejects.tsv. The shards are kept: rerun with a higher --max-reject to join them.");

    on_rank0(comm, "joining the shards", [&] {
        join_rejects(sum.rejects_path, shard_dir, U);
        join_dataset(ctx, sum, shard_dir_rel);
    });
    sum.seconds = since(t0);
    if (talk) {
        std::printf("prep %s: %lld samples read, %lld kept, %lld rejected (%s) in %s\n", o.kind.c_str(),
                    (long long)sum.read, (long long)sum.kept, (long long)sum.rejected, reasons_text(total).c_str(),
                    duration_text(sum.seconds).c_str());
        if (sum.units_skipped > 0)
            std::printf("  resumed: %lld of %lld shards were finished by an earlier run\n", (long long)sum.units_skipped,
                        (long long)sum.units);
        std::printf("  wrote %s (%lld shards in %s/), %s, tokenizer %s\n", sum.dataset_path.c_str(),
                    (long long)sum.units, shard_dir.c_str(), sum.rejects_path.c_str(), sum.tokenizer_path.c_str());
    }
    return sum;
}

}  // namespace curaclip::prep
