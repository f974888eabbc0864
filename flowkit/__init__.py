"""flowkit: a small, fast, local-first workflow orchestrator.

Decorate functions with ``@flow.step()``; ``flow.run()`` (or ``flowkit run module:flow``) runs them
in dependency order, journals each finished step, and resumes after a crash.
"""

from .codec import PickleSerializer as PickleSerializer
from .codec import Serializer as Serializer
from .context import Context as Context
from .dsl import Step as Step
from .dsl import step as step
from .errors import CorruptStateError as CorruptStateError
from .errors import CycleError as CycleError
from .errors import DuplicateStepError as DuplicateStepError
from .errors import ExecutorUnavailableError as ExecutorUnavailableError
from .errors import ExtraUnavailableError as ExtraUnavailableError
from .errors import FlowDefinitionError as FlowDefinitionError
from .errors import FlowkitError as FlowkitError
from .errors import FlowProblemsError as FlowProblemsError
from .errors import InvalidStepOptionError as InvalidStepOptionError
from .errors import RunLockedError as RunLockedError
from .errors import StateError as StateError
from .errors import StateVersionError as StateVersionError
from .errors import StateWriteError as StateWriteError
from .errors import StepTimeoutError as StepTimeoutError
from .errors import UnboundParameterError as UnboundParameterError
from .errors import UnknownDependencyError as UnknownDependencyError
from .errors import UnknownParameterError as UnknownParameterError
from .errors import UnknownStepError as UnknownStepError
from .errors import UnpicklableStepError as UnpicklableStepError
from .errors import UsageError as UsageError
from .events import Listener as Listener
from .events import RunFinished as RunFinished
from .events import RunStarted as RunStarted
from .events import StepCached as StepCached
from .events import StepFailed as StepFailed
from .events import StepRetrying as StepRetrying
from .events import StepSkipped as StepSkipped
from .events import StepStarted as StepStarted
from .events import StepSucceeded as StepSucceeded
from .flow import Flow as Flow
from .listeners import ConsoleListener as ConsoleListener
from .listeners import JsonLogListener as JsonLogListener
from .listeners import LoggingListener as LoggingListener
from .options import RunOptions as RunOptions
from .policy import Backoff as Backoff
from .policy import RetryPolicy as RetryPolicy
from .policy import Trigger as Trigger
from .remote import ExceptionStandIn as ExceptionStandIn
from .result import ErrorInfo as ErrorInfo
from .result import RunResult as RunResult
from .result import RunStatus as RunStatus
from .result import Status as Status
from .result import StepResult as StepResult
from .serializers import ByType as ByType
from .serializers import NumpySerializer as NumpySerializer
from .serializers import ParquetSerializer as ParquetSerializer
from .shell import ShellCommandError as ShellCommandError
from .shell import ShellTimeoutError as ShellTimeoutError

__version__ = "0.1.0"

__all__ = [
    "Backoff",
    "ByType",
    "ConsoleListener",
    "Context",
    "CorruptStateError",
    "CycleError",
    "DuplicateStepError",
    "ErrorInfo",
    "ExceptionStandIn",
    "ExecutorUnavailableError",
    "ExtraUnavailableError",
    "Flow",
    "FlowDefinitionError",
    "FlowProblemsError",
    "FlowkitError",
    "InvalidStepOptionError",
    "JsonLogListener",
    "Listener",
    "LoggingListener",
    "NumpySerializer",
    "ParquetSerializer",
    "PickleSerializer",
    "RetryPolicy",
    "RunFinished",
    "RunLockedError",
    "RunOptions",
    "RunResult",
    "RunStarted",
    "RunStatus",
    "Serializer",
    "ShellCommandError",
    "ShellTimeoutError",
    "StateError",
    "StateVersionError",
    "StateWriteError",
    "Status",
    "Step",
    "StepCached",
    "StepFailed",
    "StepResult",
    "StepRetrying",
    "StepSkipped",
    "StepStarted",
    "StepSucceeded",
    "StepTimeoutError",
    "Trigger",
    "UnboundParameterError",
    "UnknownDependencyError",
    "UnknownParameterError",
    "UnknownStepError",
    "UnpicklableStepError",
    "UsageError",
    "__version__",
    "step",
]
