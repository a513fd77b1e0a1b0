#include "train/run_start.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "core/check.h"
#include "io/durable_file.h"
#include "io/hdf5_file.h"
#include "model/checkpoint.h"
#include "optim/lr_schedule.h"
#include "train/run_folder.h"

namespace fs = std::filesystem;

namespace curaclip {

namespace {
// The checkpoint's stored option record and model shape (its config and
// model_config attributes); empty strings where it has none.
std::pair<std::string, std::string> checkpoint_options(const std::string& path) {
    const H5File f(path, H5File::Mode::read);
    return {f.has_attr("/", "config") ? f.attr_string("/", "config") : std::string(),
            f.has_attr("/", "model_config") ? f.attr_string("/", "model_config") : std::string()};
}
}  // namespace

RunStart plan_run_start(const TrainOptions& opt, const ModelConfig& model_cfg, const Communicator& comm) {
    const bool root = comm.rank() == 0;
    const bool resuming = !opt.resume.empty();
    RunStart start;
    // A finished run is not resumed (its marker; decided on rank 0): status 0, nothing
    // written, so a scheduler's requeue of a finished job does nothing. Only a resume to
    // more steps goes on; a new run there is refused below, as for any run folder in use.
    int64_t finished_at = root && resuming && !opt.overwrite ? finished_step(opt.out_dir) : -1;
    comm.allreduce_max(&finished_at, 1);
    if (finished_at >= 0 && opt.steps <= finished_at) {
        if (root) {
            std::printf("run folder %s holds a finished run (step %lld, %s): nothing to do; to train further "
                        "--train.resume latest --train.steps N (N > %lld)\n",
                        opt.out_dir.c_str(), (long long)finished_at,
                        (fs::path(opt.out_dir) / kFinishedMarker).string().c_str(), (long long)finished_at);
            std::fflush(stdout);
        }
        start.nothing_to_do = true;
        return start;
    }
    // Refuse to clobber a finished or running experiment; decided on rank 0, agreed by all.
    int64_t refuse = 0;
    if (root && !resuming && !opt.overwrite && holds_run(opt.out_dir)) refuse = 1;
    comm.allreduce_max(&refuse, 1);
    CC_REQUIRE(!refuse, "run folder ", opt.out_dir,
               " already holds a run (config.ini / checkpoints / metrics.jsonl): choose a new train.out, resume it with "
               "--train.resume latest, or pass --train.overwrite true");

    // ---- a resume continues the run it resumes (resume_check.h) ----
    std::string& resume_path = start.resume_path;
    std::vector<OptionChange>& resume_report = start.changes;
    int64_t& resume_step = start.resume_step;
    if (resuming) {
        resume_path = resolve_checkpoint(opt.out_dir, opt.resume);
        CC_REQUIRE(!is_safetensors_path(resume_path), "--train.resume: ", resume_path,
                   " holds open_clip weights only (safetensors): no optimizer state or data position to resume; "
                   "start a run from them with --train.init_from ", resume_path);
        const auto [run_config, run_model] = checkpoint_options(resume_path);
        {
            const H5File f(resume_path, H5File::Mode::read);
            resume_step = f.attr_i64("/", "step");
        }
        // Resuming from an earlier checkpoint of this run folder would write over the
        // later ones (same names, another trajectory): refused, naming them.
        if (fs::is_directory(opt.out_dir)) {
            std::vector<std::string> later;
            for (const auto& e : fs::directory_iterator(opt.out_dir)) {
                const std::string n = e.path().filename().string();
                long long k = -1;
                char tail[4] = {0};
                if (std::sscanf(n.c_str(), "step_%lld.h%2s", &k, tail) == 2 && std::string(tail) == "5" &&
                    n == checkpoint_name(k) && k > resume_step && !fs::equivalent(e.path(), resume_path))
                    later.push_back(n);
            }
            std::sort(later.begin(), later.end());
            std::string names;
            for (const std::string& n : later) names += (names.empty() ? "" : ", ") + n;
            CC_REQUIRE(later.empty(), "--train.resume: ", resume_path, " is at step ", resume_step, " but ",
                       opt.out_dir, " holds later checkpoints of the run (", names,
                       "): resuming from it would write over them. Resume from latest, or, to go back to step ",
                       resume_step, " on purpose, move those checkpoints out of the folder first");
        }
        const std::string stored_model =
            run_model.empty() ? std::string() : model_config_to_ini(model_config_from_ini(run_model, resume_path));
        std::string refused;
        for (const OptionChange& c : resume_changes(run_config, stored_model, opt.config_text, model_config_to_ini(model_cfg))) {
            if (c.key == "train.resume" || c.key == "train.overwrite") continue;  // what every resume says
            if (c.key == "train.steps" && std::strtoll(c.new_value.c_str(), nullptr, 10) <
                                              std::strtoll(c.run_value.c_str(), nullptr, 10)) {
                refused += "\n  train.steps: the run has " + c.run_value + ", this command " + c.new_value +
                           " (a resume may lengthen the schedule, not shorten it: to stop earlier give "
                           "--train.stop_at " + c.new_value + ")";
                continue;
            }
            if (c.allowed) resume_report.push_back(c);
            else refused += "\n  " + c.key + ": the run has " + c.run_value + ", this command " + c.new_value;
        }
        CC_REQUIRE(refused.empty(), "--train.resume: ", resume_path,
                   " would continue as another run; these options differ from the run's:", refused,
                   "\nA resume keeps the model, data, batch, seed, optimizer and schedule (only train.steps may "
                   "change); leave these options out (the run's stored options are the defaults) or start a new run "
                   "in another train.out (--train.init_from ", resume_path, " starts from its weights)");
        CC_REQUIRE(resume_step <= opt.steps, "--train.resume: ", resume_path, " is at step ", resume_step,
                   ", past train.steps = ", opt.steps, " (give train.steps >= ", resume_step, ")");
        if (resume_step == opt.steps) {
            // Trained to the end, not marked finished: stopped at the last step or during
            // the final evaluation. Done if that evaluation's line is already in
            // metrics.jsonl (or there is none to make); else it is made below (no steps).
            int64_t logged = root && (opt.eval_path.empty() || metrics_has_eval(opt.out_dir, opt.steps)) ? 1 : 0;
            comm.allreduce_max(&logged, 1);
            if (logged) {
                if (root) {
                    mark_finished(opt.out_dir, resume_step, fs::path(resume_path).filename().string());
                    std::printf("resume: %s is at step %lld = train.steps: the run has finished, nothing to do (give a "
                                "larger --train.steps to train further)\n",
                                resume_path.c_str(), (long long)resume_step);
                }
                start.nothing_to_do = true;
                return start;
            }
            if (root)
                std::printf("resume: %s is at step %lld = train.steps; the final evaluation is missing: evaluating\n",
                            resume_path.c_str(), (long long)resume_step);
        }
    }

    return start;
}

void require_resumed_data(const RunStart& start, const TrainOptions& opt, const std::string& tokenizer_id,
                          int64_t train_rows, const std::string& root_fingerprint, const Communicator& comm) {
    if (start.resume_path.empty()) return;
    const std::string& resume_path = start.resume_path;
    const bool root = comm.rank() == 0;
    {
        // The same path may hold another file now (a re-run of prep, a copy): the run
        // continues only on the data it was trained on (as far as the checkpoint
        // recorded it: its tokenizer and row count).
        const CheckpointState was = checkpoint_provenance(resume_path);
        CC_REQUIRE(was.tokenizer_id.empty() || was.tokenizer_id == tokenizer_id, "--train.resume: ", resume_path,
                   " was trained with tokenizer ", was.tokenizer_id, ", but data.tokenizer ", opt.tokenizer_path,
                   " is tokenizer ", tokenizer_id, ": the file at that path has changed since; a resume continues on "
                   "the run's own data");
        CC_REQUIRE(was.train_rows < 0 || was.train_rows == train_rows, "--train.resume: ", resume_path,
                   " was trained on ", was.train_rows, " rows of data.train ", opt.train_path, ", which now has ",
                   train_rows, ": the file at that path has changed since; a resume continues on the "
                   "run's own data (restore it, or start a new run with --train.init_from ", resume_path, ")");
        int64_t changed = root && !was.train_fingerprint.empty() && was.train_fingerprint != root_fingerprint ? 1 : 0;
        comm.allreduce_max(&changed, 1);
        CC_REQUIRE(!changed, "--train.resume: ", resume_path, " was trained on data.train ", opt.train_path,
                   " with fingerprint ", was.train_fingerprint, ", but that file now holds other data (fingerprint ",
                   root_fingerprint.empty() ? std::string("see rank 0") : root_fingerprint,
                   "): the file at that path has changed since; a resume continues on the run's own data");
    }
}

void write_run_record(const RunStart& start, const TrainOptions& opt, int64_t start_step, const AdamW& adamw) {
    if (start.resume_path.empty()) {
        io::write_text_file((fs::path(opt.out_dir) / "config.ini").string(), opt.config_text, /*replace=*/true);
    } else {
        // config.ini stays the record of how the run began; each resume writes its
        // effective options beside it, headed by what it changed.
        std::ostringstream rec;
        rec << "# options in effect when resuming " << start.resume_path << " at step " << start_step << "\n";
        for (const OptionChange& c : start.changes) {
            auto shown = [](const std::string& v) { return v.empty() ? std::string("\"\"") : v; };
            std::string line = "resume: " + c.key + " " + shown(c.run_value) + " -> " + shown(c.new_value);
            if (c.key == "train.steps") {
                int64_t old_steps = 0;
                try {
                    old_steps = std::stoll(c.run_value);
                } catch (const std::exception&) {
                }
                if (old_steps >= std::max<int64_t>(1, opt.optim.warmup_steps)) {
                    const CosineSchedule was(opt.optim.lr, opt.optim.warmup_steps, old_steps, opt.optim.min_lr);
                    char buf[200];
                    std::snprintf(buf, sizeof buf,
                                  " (the cosine schedule now ends at step %lld: lr of step %lld %.3e, was %.3e)",
                                  (long long)opt.steps, (long long)start_step + 1, adamw.lr_at(start_step),
                                  was.lr(start_step));
                    line += buf;
                }
            }
            std::printf("%s\n", line.c_str());
            rec << "# " << line << "\n";
        }
        if (!opt.config_text.empty()) {
            const std::string path = fresh_name(opt.out_dir, "config_resume_step_" + std::to_string(start_step), ".ini");
            io::write_text_file(path, rec.str() + opt.config_text, /*replace=*/true);
            std::printf("resume: options in effect written to %s (config.ini keeps the run's first options)\n",
                        path.c_str());
        }
    }
}

}  // namespace curaclip
