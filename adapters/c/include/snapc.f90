! snapc for Fortran: `use snapc`, then the application calls of snapc.h
! through iso_c_binding. Compile this file with the program and link
! libsnapc:
!
!   gfortran $PREFIX/include/snapc.f90 app.f90 $(pkg-config --libs snapc)
!
! Hooks are bind(C) functions taking `type(c_ptr), value :: user` (and, for
! checkpoint and restart, `type(c_ptr), value :: dir`: snapc_c_string(dir)
! gives the directory as a Fortran string); put them in a snapc_hooks with
! c_funloc, leave the others c_null_funptr. The values are snapc.h's.
module snapc
  use, intrinsic :: iso_c_binding
  implicit none
  private

  public :: snapc_hooks, snapc_names, snapc_fifo_options, snapc_error_info, snapc_stages, &
            snapc_checkpoint_info
  public :: snapc_start, snapc_start_with, snapc_progress, snapc_pending, snapc_progress_wait, &
            snapc_request_checkpoint, snapc_request_restart, snapc_request_quiesce_start, &
            snapc_request_quiesce_checkpoint, snapc_request_quiesce_end, snapc_request_init, &
            snapc_request_fin, snapc_is_terminating, snapc_is_quiesced, snapc_last_checkpoint, &
            snapc_stop, snapc_abi_version, snapc_config_new, snapc_config_from_env, &
            snapc_config_set, snapc_config_free, snapc_last_error, snapc_c_string, &
            snapc_log_init

  ! snapc_status
  integer(c_int), parameter, public :: SNAPC_OK = 0, SNAPC_E_INVAL = -1, SNAPC_E_NOSPACE = -2, &
      SNAPC_E_UNEXPECTED = -3, SNAPC_E_DECODE = -4, SNAPC_E_BUSY = -10, SNAPC_E_REFUSED = -11, &
      SNAPC_E_TIMEOUT = -12, SNAPC_E_NO_COORDINATOR = -13, SNAPC_E_FAILED = -14, SNAPC_E_PANIC = -15
  ! snapc_result: what a checkpoint hook returns
  integer(c_int), parameter, public :: SNAPC_CONTINUE = 0, SNAPC_TERM = 1, SNAPC_ERROR = 2, &
      SNAPC_RESTART = 3
  ! snapc_event: what snapc_progress saw end
  integer(c_int), parameter, public :: SNAPC_EVENT_NONE = 0, SNAPC_EVENT_CHECKPOINT = 1, &
      SNAPC_EVENT_CHECKPOINT_FAILED = 2, SNAPC_EVENT_QUIESCED = 3, SNAPC_EVENT_REQUEST = 4
  ! snapc_cr_state
  integer(c_int), parameter, public :: SNAPC_CR_NONE = 0, SNAPC_CR_RESTART = 3, &
      SNAPC_CR_CONTINUE = 4, SNAPC_CR_TERM = 5, SNAPC_CR_RUNNING = 6, SNAPC_CR_ERROR = 7
  ! SNAPC_ABI_VERSION of snapc.h (Fortran names ignore case: this one differs
  ! from the function snapc_abi_version).
  integer(c_int32_t), parameter, public :: SNAPC_MODULE_ABI_VERSION = 1

  ! The hooks (snapc_hooks): c_funloc of bind(C) functions, or c_null_funptr.
  type, bind(C) :: snapc_hooks
    type(c_funptr) :: prepare = c_null_funptr
    type(c_funptr) :: checkpoint = c_null_funptr
    type(c_funptr) :: recover = c_null_funptr
    type(c_funptr) :: restart = c_null_funptr
  end type

  type, bind(C) :: snapc_names
    integer(c_int32_t) :: pid, n
  end type

  type, bind(C) :: snapc_fifo_options
    integer(c_int) :: all_migrating, migrating, term, stop, inc_prep_only, inc_recover_only, &
        has_debugger, attach_debugger, detach_debugger
  end type

  type, bind(C) :: snapc_error_info
    integer(c_int) :: wait, failure
    integer(c_int32_t) :: detail
    character(kind=c_char) :: text(128)
  end type

  ! Stage durations in microseconds; -1 for a stage that did not run.
  type, bind(C) :: snapc_stages
    integer(c_int64_t) :: signal_us, handshake_us, prepare_us, checkpoint_us, sync_us, &
        release_wait_us, recover_us, teardown_us
  end type

  ! How the last handshake ended (snapc_last_checkpoint).
  type, bind(C) :: snapc_checkpoint_info
    integer(c_int) :: kind
    type(snapc_names) :: names
    integer(c_int) :: response, has_options
    type(snapc_fifo_options) :: options
    integer(c_int32_t) :: handle
    integer(c_int) :: state, ok
    type(snapc_error_info) :: error
    type(snapc_stages) :: stages
  end type

  interface
    function snapc_start(hooks, user) bind(C, name="snapc_start")
      import :: c_ptr, snapc_hooks
      type(snapc_hooks), intent(in) :: hooks
      type(c_ptr), value :: user
      type(c_ptr) :: snapc_start
    end function

    function snapc_start_with(config, hooks, user) bind(C, name="snapc_start_with")
      import :: c_ptr, snapc_hooks
      type(c_ptr), value :: config
      type(snapc_hooks), intent(in) :: hooks
      type(c_ptr), value :: user
      type(c_ptr) :: snapc_start_with
    end function

    function snapc_progress(s) bind(C, name="snapc_progress")
      import :: c_ptr, c_int
      type(c_ptr), value :: s
      integer(c_int) :: snapc_progress
    end function

    function snapc_pending(s) bind(C, name="snapc_pending")
      import :: c_ptr, c_int
      type(c_ptr), value :: s
      integer(c_int) :: snapc_pending
    end function

    ! timeout_ms is a C unsigned int: pass a non-negative value.
    function snapc_progress_wait(s, timeout_ms) bind(C, name="snapc_progress_wait")
      import :: c_ptr, c_int, c_int32_t
      type(c_ptr), value :: s
      integer(c_int32_t), value :: timeout_ms
      integer(c_int) :: snapc_progress_wait
    end function

    function snapc_request_checkpoint(s) bind(C, name="snapc_request_checkpoint")
      import :: c_ptr, c_int
      type(c_ptr), value :: s
      integer(c_int) :: snapc_request_checkpoint
    end function

    ! handle: NUL-terminated (trim(h)//c_null_char).
    function snapc_request_restart(s, seq, handle) bind(C, name="snapc_request_restart")
      import :: c_ptr, c_int, c_int32_t, c_char
      type(c_ptr), value :: s
      integer(c_int32_t), value :: seq
      character(kind=c_char), intent(in) :: handle(*)
      integer(c_int) :: snapc_request_restart
    end function

    function snapc_request_quiesce_start(s) bind(C, name="snapc_request_quiesce_start")
      import :: c_ptr, c_int
      type(c_ptr), value :: s
      integer(c_int) :: snapc_request_quiesce_start
    end function

    function snapc_request_quiesce_checkpoint(s) bind(C, name="snapc_request_quiesce_checkpoint")
      import :: c_ptr, c_int
      type(c_ptr), value :: s
      integer(c_int) :: snapc_request_quiesce_checkpoint
    end function

    function snapc_request_quiesce_end(s) bind(C, name="snapc_request_quiesce_end")
      import :: c_ptr, c_int
      type(c_ptr), value :: s
      integer(c_int) :: snapc_request_quiesce_end
    end function

    function snapc_request_init(s) bind(C, name="snapc_request_init")
      import :: c_ptr, c_int
      type(c_ptr), value :: s
      integer(c_int) :: snapc_request_init
    end function

    function snapc_request_fin(s) bind(C, name="snapc_request_fin")
      import :: c_ptr, c_int
      type(c_ptr), value :: s
      integer(c_int) :: snapc_request_fin
    end function

    function snapc_is_terminating(s) bind(C, name="snapc_is_terminating")
      import :: c_ptr, c_int
      type(c_ptr), value :: s
      integer(c_int) :: snapc_is_terminating
    end function

    function snapc_is_quiesced(s) bind(C, name="snapc_is_quiesced")
      import :: c_ptr, c_int
      type(c_ptr), value :: s
      integer(c_int) :: snapc_is_quiesced
    end function

    function snapc_last_checkpoint(s, info) bind(C, name="snapc_last_checkpoint")
      import :: c_ptr, c_int, snapc_checkpoint_info
      type(c_ptr), value :: s
      type(snapc_checkpoint_info), intent(out) :: info
      integer(c_int) :: snapc_last_checkpoint
    end function

    subroutine snapc_stop(s) bind(C, name="snapc_stop")
      import :: c_ptr
      type(c_ptr), value :: s
    end subroutine

    function snapc_abi_version() bind(C, name="snapc_abi_version")
      import :: c_int32_t
      integer(c_int32_t) :: snapc_abi_version
    end function

    function snapc_config_new() bind(C, name="snapc_config_new")
      import :: c_ptr
      type(c_ptr) :: snapc_config_new
    end function

    function snapc_config_from_env() bind(C, name="snapc_config_from_env")
      import :: c_ptr
      type(c_ptr) :: snapc_config_from_env
    end function

    ! name, value: NUL-terminated (trim(x)//c_null_char).
    function snapc_config_set(config, name, value) bind(C, name="snapc_config_set")
      import :: c_ptr, c_int, c_char
      type(c_ptr), value :: config
      character(kind=c_char), intent(in) :: name(*), value(*)
      integer(c_int) :: snapc_config_set
    end function

    subroutine snapc_config_free(config) bind(C, name="snapc_config_free")
      import :: c_ptr
      type(c_ptr), value :: config
    end subroutine

    ! filter: c_null_ptr (SNAPC_LOG, else RUST_LOG, else "warn") or
    ! c_loc of a c_null_char-terminated c_char string.
    function snapc_log_init(filter) bind(C, name="snapc_log_init")
      import :: c_ptr, c_int
      type(c_ptr), value :: filter
      integer(c_int) :: snapc_log_init
    end function

    function snapc_last_error_c() bind(C, name="snapc_last_error")
      import :: c_ptr
      type(c_ptr) :: snapc_last_error_c
    end function

    function c_strlen(p) bind(C, name="strlen")
      import :: c_ptr, c_size_t
      type(c_ptr), value :: p
      integer(c_size_t) :: c_strlen
    end function
  end interface

contains

  ! A NUL-terminated C string (a hook's `dir`) as a Fortran string.
  function snapc_c_string(p) result(str)
    type(c_ptr), value :: p
    character(len=:), allocatable :: str
    character(kind=c_char), pointer :: chars(:)
    integer :: n, i
    if (.not. c_associated(p)) then
      str = ""
      return
    end if
    n = int(c_strlen(p))
    call c_f_pointer(p, chars, [n])
    allocate(character(len=n) :: str)
    do i = 1, n
      str(i:i) = chars(i)
    end do
  end function

  ! The message of the last call that failed on this thread.
  function snapc_last_error() result(msg)
    character(len=:), allocatable :: msg
    msg = snapc_c_string(snapc_last_error_c())
  end function

end module snapc
