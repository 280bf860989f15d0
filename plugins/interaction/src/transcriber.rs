//! Speech recognition off the streaming thread.
//!
//! A [`TranscriberWorker`] owns a [`Transcribe`] backend on its own thread. The cascade submits
//! a participant's utterance as soon as a micro-turn ends with that participant silent (one
//! VAD frame), before the turn is known to have ended; when the turn ends, the final
//! transcript of the same audio is usually ready or under way, and the element waits only for
//! what remains. A guess that the participant had stopped is superseded by their next job: a
//! queued job is skipped when a newer one of the same participant arrives, unless it was
//! pinned (an ended turn waits for it). Results are only *used* at the end of a turn, and
//! always for exactly the audio of the turn, so a non-live run gives the same output whatever
//! the thread timing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A speech recogniser: 16 kHz mono audio → text.
pub trait Transcribe: Send {
    fn transcribe(&mut self, audio: &[f32]) -> Result<String, String>;
}

/// A finished job.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcription {
    pub text: String,
    /// Time the backend spent.
    pub elapsed: Duration,
    /// Seconds of audio.
    pub audio_seconds: f64,
}

type JobResult = (u64, Result<Transcription, String>);

/// Counts finished jobs, so that a thread that holds none of the worker's state can wait for
/// the next one (the element waits for an ended turn's transcript without holding its lock).
#[derive(Debug, Clone, Default)]
pub struct Completions {
    finished: Arc<(Mutex<u64>, Condvar)>,
}

impl Completions {
    /// Jobs finished so far.
    pub fn count(&self) -> u64 {
        *self.finished.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until more than `seen` jobs have finished, or `deadline`; true if they have.
    pub fn wait_past(&self, seen: u64, deadline: Instant) -> bool {
        let (count, changed) = &*self.finished;
        let mut count = count.lock().unwrap_or_else(|p| p.into_inner());
        while *count <= seen {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            count = changed
                .wait_timeout(count, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    fn finished_one(&self) {
        let (count, changed) = &*self.finished;
        *count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        changed.notify_all();
    }
}

/// A queued transcription: `key` names the participant, so that a newer job of the same
/// participant supersedes an older one that nobody has pinned yet.
struct Job {
    id: u64,
    key: usize,
    audio: Vec<f32>,
}

/// Shared between the worker thread and its owner.
#[derive(Default)]
struct Shared {
    /// Jobs whose result will be asked for: never skipped.
    pinned: Mutex<HashSet<u64>>,
    /// Jobs run and jobs skipped (superseded before they started).
    run: AtomicU64,
    skipped: AtomicU64,
}

impl Shared {
    fn is_pinned(&self, id: u64) -> bool {
        self.pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id)
    }
}

/// The worker thread and its queues.
pub struct TranscriberWorker {
    jobs: Option<mpsc::Sender<Job>>,
    results: mpsc::Receiver<JobResult>,
    done: HashMap<u64, Result<Transcription, String>>,
    next_id: u64,
    thread: Option<JoinHandle<()>>,
    completions: Completions,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TranscriberWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranscriberWorker")
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

impl TranscriberWorker {
    pub fn start(mut backend: Box<dyn Transcribe>) -> Result<Self, String> {
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (result_tx, result_rx) = mpsc::channel::<JobResult>();
        let completions = Completions::default();
        let finished = completions.clone();
        let shared = Arc::new(Shared::default());
        let worker_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("interaction-asr".into())
            .spawn(move || {
                let mut queue: VecDeque<Job> = VecDeque::new();
                loop {
                    if queue.is_empty() {
                        match job_rx.recv() {
                            Ok(job) => queue.push_back(job),
                            Err(_) => break,
                        }
                    }
                    queue.extend(job_rx.try_iter());
                    let Some(Job { id, key, audio }) = queue.pop_front() else {
                        continue;
                    };
                    // A newer job of the same participant is waiting: this one's audio was a
                    // guess that the participant had stopped, and they went on speaking.
                    if queue.iter().any(|j| j.key == key) && !worker_shared.is_pinned(id) {
                        worker_shared.skipped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    worker_shared.run.fetch_add(1, Ordering::Relaxed);
                    let started = Instant::now();
                    let result = backend.transcribe(&audio).map(|text| Transcription {
                        text,
                        elapsed: started.elapsed(),
                        audio_seconds: audio.len() as f64 / 16_000.0,
                    });
                    if result_tx.send((id, result)).is_err() {
                        break;
                    }
                    finished.finished_one();
                }
            })
            .map_err(|e| format!("cannot start the transcription thread: {e}"))?;
        Ok(TranscriberWorker {
            jobs: Some(job_tx),
            results: result_rx,
            done: HashMap::new(),
            next_id: 1,
            thread: Some(thread),
            completions,
            shared,
        })
    }

    /// Marks job `id` as wanted: a newer job of the same participant no longer skips it.
    pub fn pin(&self, id: u64) {
        self.shared
            .pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
    }

    /// Jobs run and jobs skipped because a newer one of the same participant superseded
    /// them before they started, since the worker started.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.shared.run.load(Ordering::Relaxed),
            self.shared.skipped.load(Ordering::Relaxed),
        )
    }

    /// A handle to wait for finished jobs with.
    pub fn completions(&self) -> Completions {
        self.completions.clone()
    }

    /// Queues `audio` of participant `key`; returns the job id. Unless pinned ([`Self::pin`])
    /// by the time the worker reaches it, the job is skipped if a newer job of the same `key`
    /// is queued behind it; only pinned jobs may be waited for.
    pub fn submit(&mut self, key: usize, audio: Vec<f32>) -> Result<u64, String> {
        let id = self.next_id;
        self.next_id += 1;
        self.jobs
            .as_ref()
            .ok_or("the transcription thread has stopped")?
            .send(Job { id, key, audio })
            .map_err(|_| "the transcription thread has stopped".to_owned())?;
        Ok(id)
    }

    /// Waits (at most `timeout`) for job `id` and takes its result.
    pub fn wait(&mut self, id: u64, timeout: Duration) -> Result<Transcription, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(result) = self.done.remove(&id) {
                return result;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.results.recv_timeout(left) {
                Ok((done_id, result)) => {
                    self.done.insert(done_id, result);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "transcription took longer than {} ms",
                        timeout.as_millis()
                    ));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("the transcription thread has stopped".into());
                }
            }
        }
    }

    /// Takes the result of job `id` if it is done, without waiting.
    pub fn poll(&mut self, id: u64) -> Option<Result<Transcription, String>> {
        while let Ok((done_id, result)) = self.results.try_recv() {
            self.done.insert(done_id, result);
        }
        self.done.remove(&id)
    }

    /// Drops results nobody will ask for (superseded jobs) and their pins, keeping memory
    /// flat.
    pub fn forget_except(&mut self, keep: &[u64]) {
        while let Ok((id, result)) = self.results.try_recv() {
            self.done.insert(id, result);
        }
        self.done.retain(|id, _| keep.contains(id));
        self.shared
            .pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id| keep.contains(id));
    }
}

impl Drop for TranscriberWorker {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Count;
    impl Transcribe for Count {
        fn transcribe(&mut self, audio: &[f32]) -> Result<String, String> {
            if audio.is_empty() {
                return Err("empty".into());
            }
            Ok(format!("{} samples", audio.len()))
        }
    }

    #[test]
    fn jobs_come_back_by_id_in_any_order() {
        let mut worker = TranscriberWorker::start(Box::new(Count)).unwrap();
        let a = worker.submit(0, vec![0.0; 16_000]).unwrap();
        let b = worker.submit(1, vec![]).unwrap();
        let c = worker.submit(2, vec![0.0; 8]).unwrap();
        let long = Duration::from_secs(5);
        assert_eq!(worker.wait(c, long).unwrap().text, "8 samples");
        assert_eq!(worker.wait(b, long).unwrap_err(), "empty");
        let first = worker.wait(a, long).unwrap();
        assert_eq!(first.text, "16000 samples");
        assert!((first.audio_seconds - 1.0).abs() < 1e-9);
        assert!(worker.wait(a, Duration::from_millis(10)).is_err());
    }

    struct Slow;
    impl Transcribe for Slow {
        fn transcribe(&mut self, _audio: &[f32]) -> Result<String, String> {
            std::thread::sleep(Duration::from_millis(150));
            Ok("done".into())
        }
    }

    #[test]
    fn completions_wake_a_waiter_without_the_worker() {
        let mut worker = TranscriberWorker::start(Box::new(Slow)).unwrap();
        let completions = worker.completions();
        let seen = completions.count();
        let started = Instant::now();
        let id = worker.submit(0, vec![0.0; 160]).unwrap();
        // Too short a wait: false, and the job is still to come.
        assert!(!completions.wait_past(seen, started + Duration::from_millis(20)));
        assert!(worker.poll(id).is_none());
        // Woken when the job finishes, not at the deadline.
        let deadline = started + Duration::from_secs(5);
        assert!(completions.wait_past(seen, deadline));
        let woke = started.elapsed();
        assert!(
            woke >= Duration::from_millis(150) && woke < Duration::from_secs(2),
            "{woke:?}"
        );
        assert_eq!(completions.count(), seen + 1);
        assert_eq!(worker.poll(id).unwrap().unwrap().text, "done");
    }

    #[test]
    fn a_newer_job_of_the_same_participant_skips_an_unpinned_one() {
        let mut worker = TranscriberWorker::start(Box::new(Slow)).unwrap();
        // The worker is busy with `first` while the others queue behind it.
        let first = worker.submit(0, vec![0.0; 160]).unwrap();
        worker.pin(first);
        std::thread::sleep(Duration::from_millis(30));
        let guess = worker.submit(0, vec![0.0; 160]).unwrap();
        let kept = worker.submit(1, vec![0.0; 160]).unwrap();
        let pinned = worker.submit(1, vec![0.0; 160]).unwrap();
        worker.pin(pinned);
        let pinned_too = worker.submit(1, vec![0.0; 160]).unwrap();
        worker.pin(kept);
        let newest = worker.submit(0, vec![0.0; 160]).unwrap();
        let long = Duration::from_secs(5);
        // `guess` (participant 0, superseded by `newest`) is skipped; participant 1's pinned
        // jobs all run, whatever came after them.
        for id in [first, kept, pinned, pinned_too, newest] {
            assert_eq!(worker.wait(id, long).unwrap().text, "done", "job {id}");
        }
        assert!(worker.poll(guess).is_none());
        assert_eq!(worker.counts(), (5, 1));
    }
}
