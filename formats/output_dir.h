#pragma once
// A checkpoint directory that appears whole or not at all, and that never costs the user a file:
// files are written into a staging directory beside OUT and moved onto OUT by commit(). A crash
// leaves only the staging directory, whose name never looks like a finished checkpoint.
//
// What may sit at OUT (checked on construction, before any work):
//  - nothing, or an empty directory: written.
//  - a ptq output (OUT/ptq-output.json, below): replaced by commit() when claim() finds the
//    same job identity, or when `overwrite` is set; only the files its marker lists are removed.
//    A checkpoint written before the marker existed is recognised by its model.safetensors
//    metadata (ptq.version) and treated as a ptq output of an unknown job.
//  - a non-empty directory that is not a ptq output: refused, unless `overwrite`, which writes
//    ptq's files beside the existing ones; a name ptq writes that already exists there is
//    refused even then (ptq removes nothing it did not write).
//  - anything else (a file, a symbolic link, a device): refused, `overwrite` or not.
//
// The marker `ptq-output.json`, written last into every output:
//   {"ptq_output": 1, "job_sha256": "<hex>", "files": ["config.json", ...]}   (files sorted)
// job_sha256 is the job identity given to claim() (inputs and recipe, not the ptq build), so the
// same job rerun finds its own output; the content is deterministic.
//
// Staging names:
//  - kFresh:     `OUT.partial-<pid>/`, emptied on open and removed unless committed.
//  - kResumable: `OUT.partial/`, kept (it may hold an interrupted run's resume state under
//                resume/) but emptied of everything else on open: files an interrupted final
//                write left (e.g. config.json.tmp.<pid>) never reach the checkpoint. An exclusive
//                lock (flock on `OUT.partial.lock`) stops two runs from sharing it; the lock file
//                is removed when the run ends. A run that fails removes the staging directory
//                unless it holds work to resume (keep_on_failure(), or it existed before this
//                run); partial_note() says what is kept.
#include <cstdint>
#include <set>
#include <span>
#include <string>

namespace ptq {

inline constexpr const char* kOutputMarker = "ptq-output.json";

class OutputDir {
 public:
  enum class Staging { kFresh, kResumable };
  OutputDir(const std::string& final_path, Staging staging = Staging::kFresh, bool overwrite = false);
  ~OutputDir();  // see above: removes what a failed run left unless it is worth keeping
  OutputDir(const OutputDir&) = delete;
  OutputDir& operator=(const OutputDir&) = delete;
  const std::string& staging() const { return staging_; }
  const std::string& final_path() const { return final_; }
  std::string path_of(const std::string& file) const;
  void write_text(const std::string& file, const std::string& text) const;
  void copy_file(const std::string& src, const std::string& file) const;
  // Removes a file or directory of the staging area (e.g. resume state before commit).
  void remove(const std::string& file) const;
  // The job's identity (hex). Throws Error when OUT holds a ptq output of another job and
  // `overwrite` is off. Call before heavy work; commit() writes it into the marker.
  void claim(const std::string& job_sha256);
  void commit();
  // The staging area now holds work worth resuming (a finished block): a failed run keeps it.
  void keep_on_failure() { keep_on_failure_ = true; }
  // "" when nothing is left behind on failure, else a sentence naming the staging directory.
  std::string partial_note() const;

 private:
  enum class Existing { kAbsent, kEmpty, kPtqOutput, kForeign };
  void inspect_existing();
  void open_staging();
  void move_into_place(const std::set<std::string>& new_files);

  std::string final_, staging_, lock_path_, job_sha256_;
  Staging mode_;
  bool overwrite_;
  Existing existing_ = Existing::kAbsent;
  std::string existing_job_;           // the marker's job_sha256 ("" when unknown)
  std::set<std::string> existing_ours_;  // entries of OUT that ptq wrote (marker included)
  std::set<std::string> existing_foreign_;
  int lock_fd_ = -1;
  bool created_staging_ = false;
  bool keep_on_failure_ = false;
  bool committed_ = false;
};

}  // namespace ptq
