"""Reading video, shared by the jobs: container headers and decoders (io, frames), which frames
to sample (sampling), work units of bounded memory (plan), decoding them (decode), and the
guard that keeps a hung or crashing native decoder from taking a run down (guard)."""
