"""Names the engine and its child processes share. Imports nothing, so the engine can use them
without importing pytest, and the child plugin without importing the engine."""

PROTOCOL_VERSION = 2
PROTOCOL_ENV_PREFIX = "TEST_FRAMEWORK_"
ENV_CHANNEL = "TEST_FRAMEWORK_CHANNEL_FD"  # the protocol socket's descriptor
ENV_SELECT = "TEST_FRAMEWORK_SELECT"  # JSON file narrowing a worker's collection
ENV_STACKS = "TEST_FRAMEWORK_STACKS"  # file that SIGUSR1 dumps every thread's stack into
ENV_ZYGOTE = "TEST_FRAMEWORK_ZYGOTE_FD"  # the zygote's command socket
# Set: the zygote forks before collecting and each child collects only its own files (the
# engine knows the tests already, from its collection cache).
ENV_ZYGOTE_EARLY = "TEST_FRAMEWORK_ZYGOTE_EARLY"
ENV_BOARD = "TEST_FRAMEWORK_BOARD"  # the progress board: which test runs, since when
