"""`python3 -m nvpcap`: the same as the `nvpcap` command."""
from .cli import main

if __name__ == "__main__":  # worker processes (spawn/forkserver) import this module without running it
    main()
