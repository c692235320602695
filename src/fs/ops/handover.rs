//! The filesystem handed from one process image of a mount to the next (`zkfs
//! reload`, see `kernel/handover.rs`): the view, the open files (each still reading
//! the version it opened, a document half written still half written), the locks
//! held (their holders keep them) and the scratch files.

use serde::{Deserialize, Serialize};

use crate::fs::handles::HandedHandle;
use crate::fs::locks::HandedLock;
use crate::fs::scratch::HandedScratch;
use crate::fs::Fs;
use crate::model::handover::HandedView;

/// A filesystem as handed over.
#[derive(Serialize, Deserialize)]
pub struct HandedFs {
    view: HandedView,
    next_fh: u64,
    handles: Vec<HandedHandle>,
    locks: Vec<HandedLock>,
    scratch: HandedScratch,
}

impl Fs {
    /// The filesystem as it is now, for the successor. Called with no request in
    /// progress.
    pub fn handed_over(&self) -> HandedFs {
        let (next_fh, handles) = self.handles.handed();
        HandedFs {
            view: self.view.handed_over(),
            next_fh,
            handles,
            locks: self.locks.handed(),
            scratch: self.scratch.handed(),
        }
    }

    /// Takes over what [`Fs::handed_over`] gave, before the kernel is served.
    pub fn take_over(&self, handed: HandedFs) {
        self.view.take_over(handed.view);
        self.handles.take_over(handed.next_fh, handed.handles);
        self.locks.take_over(handed.locks);
        self.scratch.take_over(handed.scratch);
    }
}
