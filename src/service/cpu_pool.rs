//! Bounded audio CPU work — the decoders that check compressed uploads as they stream in, and
//! the transcoders of renditions, waveforms and e-mail attachments — on threads of its own.
//!
//! Not on tokio's blocking pool: a decoder lives as long as its upload, mostly waiting for the
//! client, and a few hundred of them parked there would leave no thread for the file writes the
//! fs audio store makes through `tokio::fs`. Each job takes a slot (at most `slots` threads
//! alive), waiting for one in a bounded queue for a bounded time; past either, the caller gets
//! [`ServiceError::Busy`] (503 with Retry-After) instead of a hang. Slots are freed when a job's
//! thread ends, so the node serves normally again as soon as a load stops.
//!
//! A pool may also gate CPU use ([`CpuGate`]): its jobs take a turn while they compute and give
//! it back while they wait for input, so hundreds of slow uploads never run more than `turns`
//! decoders at once and the rest of the node (plain WAV deposits, listings) keeps its CPU time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

use super::{Result, ServiceError};

/// Stack of a pool thread: the decoders and encoders keep their buffers on the heap, so this is
/// ample, and 256 parked decoders reserve 256 MiB of address space rather than 2 GiB.
const STACK_BYTES: usize = 1024 * 1024;

/// Threads for bounded audio CPU work (see the module docs).
pub struct CpuPool {
    what: &'static str,
    slots: Arc<Semaphore>,
    queue: usize,
    waiting: AtomicUsize,
    wait: Duration,
    gate: Option<Arc<CpuGate>>,
    load: Arc<watch::Sender<PoolLoad>>,
}

/// What a pool is doing: jobs holding a slot and callers waiting for one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolLoad {
    /// Slots held (decoders or transcoders at work, or about to be).
    pub running: usize,
    /// Callers waiting for a slot.
    pub waiting: usize,
}

/// A slot of a [`CpuPool`]: the right to run one job on a thread of its own.
pub struct Slot {
    what: &'static str,
    held: Held,
    gate: Option<Arc<CpuGate>>,
}

/// A held slot; dropping it frees the slot and updates the pool's load.
struct Held {
    _permit: OwnedSemaphorePermit,
    load: Arc<watch::Sender<PoolLoad>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.load.send_modify(|l| l.running -= 1);
    }
}

impl CpuPool {
    /// A pool of `slots` threads for `what` ("decoders", "transcoders"); at most `queue` callers
    /// wait for a slot, each for at most `wait`.
    pub fn new(what: &'static str, slots: usize, queue: usize, wait: Duration) -> Self {
        Self {
            what,
            slots: Arc::new(Semaphore::new(slots.max(1))),
            queue,
            waiting: AtomicUsize::new(0),
            wait,
            gate: None,
            load: Arc::new(watch::Sender::new(PoolLoad::default())),
        }
    }

    /// Follows the pool's load.
    pub fn load(&self) -> watch::Receiver<PoolLoad> {
        self.load.subscribe()
    }

    /// Lets at most `turns` of this pool's jobs compute at once (see [`CpuGate`]).
    pub fn with_cpu_gate(mut self, turns: usize) -> Self {
        self.gate = Some(Arc::new(CpuGate::new(turns)));
        self
    }

    /// Waits for a slot: `Busy` when the queue is full or no slot frees in time.
    pub async fn slot(&self) -> Result<Slot> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(self.slot_of(permit));
        }
        // A guard, not a decrement after the wait: the caller's future may be dropped meanwhile
        // (its client went away).
        let mut queued = Queued {
            pool: self,
            counted: false,
        };
        let waited = if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue {
            None
        } else {
            queued.counted = true;
            self.load.send_modify(|l| l.waiting += 1);
            tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
                .await
                .ok()
        };
        drop(queued);
        match waited {
            Some(Ok(permit)) => Ok(self.slot_of(permit)),
            Some(Err(_)) => Err(ServiceError::Unavailable("shutting down".into())),
            None => Err(self.busy()),
        }
    }

    /// Waits for a slot as long as it takes: for background work (e-mail attachments), whose
    /// own concurrency is bounded and which has no client to answer 503.
    pub async fn slot_patient(&self) -> Result<Slot> {
        match self.slots.clone().acquire_owned().await {
            Ok(permit) => Ok(self.slot_of(permit)),
            Err(_) => Err(ServiceError::Unavailable("shutting down".into())),
        }
    }

    fn slot_of(&self, permit: OwnedSemaphorePermit) -> Slot {
        self.load.send_modify(|l| l.running += 1);
        Slot {
            what: self.what,
            held: Held {
                _permit: permit,
                load: self.load.clone(),
            },
            gate: self.gate.clone(),
        }
    }

    fn busy(&self) -> ServiceError {
        tracing::warn!(
            pool = self.what,
            waiting = self.waiting.load(Ordering::SeqCst),
            "all {} are busy; request refused with 503",
            self.what
        );
        ServiceError::Busy {
            message: format!("all {} of this node are busy; retry shortly", self.what),
            retry_after: self.wait.as_secs().clamp(1, 10),
        }
    }
}

/// A caller counted in the queue (`counted`: inside its bound, waiting) until dropped.
struct Queued<'a> {
    pool: &'a CpuPool,
    counted: bool,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.pool.waiting.fetch_sub(1, Ordering::SeqCst);
        if self.counted {
            self.pool.load.send_modify(|l| l.waiting -= 1);
        }
    }
}

impl Slot {
    /// The pool's CPU gate, for a job that waits for input between computations.
    pub fn gate(&self) -> Option<Arc<CpuGate>> {
        self.gate.clone()
    }

    /// Runs `job` on a thread of its own, holding the slot (and a CPU turn, when the pool has a
    /// gate) until it returns. The answer is `None` when the job panicked.
    pub fn run<T, F>(self, job: F) -> Result<oneshot::Receiver<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let Slot { what, held, gate } = self;
        std::thread::Builder::new()
            .name(format!("voxmail-{what}"))
            .stack_size(STACK_BYTES)
            .spawn(move || {
                let turn = gate.as_deref().map(CpuGate::take);
                let out = job();
                drop(turn);
                drop(held);
                let _ = tx.send(out);
            })
            .map_err(|e| {
                tracing::error!(error = %e, "cannot start a thread for the {what}");
                ServiceError::Busy {
                    message: format!("the {what} of this node cannot start a thread"),
                    retry_after: 5,
                }
            })?;
        Ok(rx)
    }
}

/// A counting semaphore for threads: `turns` of them compute at once.
pub struct CpuGate {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A turn at the CPU, given back when dropped.
pub struct Turn<'a>(&'a CpuGate);

impl CpuGate {
    fn new(turns: usize) -> Self {
        Self {
            free: Mutex::new(turns.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Blocks the calling thread until a turn is free.
    pub fn take(&self) -> Turn<'_> {
        self.acquire();
        Turn(self)
    }

    /// Gives the calling thread's turn back while `f` waits (for input), then takes one again.
    pub fn release_while<T>(&self, f: impl FnOnce() -> T) -> T {
        self.give_back();
        let out = f();
        self.acquire();
        out
    }

    fn acquire(&self) {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
    }

    fn give_back(&self) {
        *self.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.freed.notify_one();
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.give_back();
    }
}
