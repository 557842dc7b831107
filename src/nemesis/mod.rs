//! The nemesis: injects the chaos file's faults on schedule and heals them, on every exit
//! path. (Scheduling arrives with chaos files.)

pub mod inject;
