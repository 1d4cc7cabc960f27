! counter.f90: a counter application in Fortran on libsnapc (`use snapc`).
!
!   counter_f --steps N [--pace-us U]
!
! Folds a checksum over N steps, calling snapc_progress between slices of
! 2,000 steps; the checkpoint hook saves (steps, checksum) into the
! snapshot directory and the restart hook loads them, so that a run
! restarted from any snapshot ends with the result of an uninterrupted one.
! The checksum is seeded with the rank (SNAPC_RANK). Prints "pid=<pid>",
! "start steps=<n>", one "checkpoint n=<n> handle=<h> state=<s>" line per
! checkpoint and "result steps=<n> checksum=<x>".
!
! Build: gfortran $PREFIX/include/snapc.f90 counter.f90 $(pkg-config --libs snapc) -o counter_f
module counter_state
  use, intrinsic :: iso_c_binding
  use snapc
  implicit none
  integer(c_int64_t) :: steps = 0, checksum = 0

contains

  subroutine step()
    steps = steps + 1
    checksum = mod(checksum * 31_c_int64_t + steps, 1000000007_c_int64_t)
  end subroutine

  ! The checkpoint hook: the state into dir/state.
  function save(user, dir) bind(C) result(r)
    type(c_ptr), value :: user, dir
    integer(c_int) :: r
    integer :: u, ios
    open(newunit=u, file=snapc_c_string(dir)//"/state", status="new", action="write", iostat=ios)
    if (ios /= 0) then
      r = SNAPC_ERROR
      return
    end if
    write(u, *, iostat=ios) steps, checksum
    close(u)
    r = merge(SNAPC_CONTINUE, SNAPC_ERROR, ios == 0)
  end function

  ! The restart hook: the state from dir/state.
  function load(user, dir) bind(C) result(r)
    type(c_ptr), value :: user, dir
    integer(c_int) :: r
    integer :: u, ios
    open(newunit=u, file=snapc_c_string(dir)//"/state", status="old", action="read", iostat=ios)
    if (ios /= 0) then
      r = 1
      return
    end if
    read(u, *, iostat=ios) steps, checksum
    close(u)
    r = merge(0, 1, ios == 0)
  end function
end module counter_state

program counter_f
  use, intrinsic :: iso_c_binding
  use snapc
  use counter_state
  implicit none
  interface
    function c_getpid() bind(C, name="getpid")
      import :: c_int
      integer(c_int) :: c_getpid
    end function
    function usleep(us) bind(C, name="usleep")
      import :: c_int, c_int32_t
      integer(c_int32_t), value :: us
      integer(c_int) :: usleep
    end function
  end interface
  type(snapc_hooks) :: hooks
  type(snapc_checkpoint_info) :: info
  type(c_ptr) :: s
  integer(c_int64_t) :: total = 0, slice, i
  integer(c_int32_t) :: pace = 0
  integer(c_int) :: ev, rc
  character(len=64) :: arg, val
  integer :: a, stat

  do a = 1, command_argument_count(), 2
    call get_command_argument(a, arg)
    call get_command_argument(a + 1, val)
    select case (trim(arg))
    case ("--steps")
      read(val, *) total
    case ("--pace-us")
      read(val, *) pace
    case default
      write(0, *) "usage: counter_f --steps N [--pace-us U]"
      stop 2
    end select
  end do
  if (snapc_abi_version() /= SNAPC_MODULE_ABI_VERSION) then
    write(0, *) "counter_f: libsnapc has another ABI"
    stop 1
  end if
  call get_environment_variable("SNAPC_RANK", val, status=stat)
  if (stat == 0) read(val, *) checksum

  ! snapc's log on standard error, as SNAPC_LOG says (warnings by default).
  if (snapc_log_init(c_null_ptr) /= SNAPC_OK) then
    write(0, '(a)') "counter_f: "//snapc_last_error()
  end if
  hooks%checkpoint = c_funloc(save)
  hooks%restart = c_funloc(load)
  s = snapc_start(hooks, c_null_ptr)
  if (.not. c_associated(s)) then
    write(0, '(a)') "counter_f: "//snapc_last_error()
    stop 1
  end if
  write(*, '(a,i0)') "pid=", c_getpid()
  write(*, '(a,i0)') "start steps=", steps
  flush(6)

  do while (steps < total)
    slice = min(2000_c_int64_t, total - steps)
    do i = 1, slice
      call step()
    end do
    if (pace > 0) rc = usleep(pace)
    ev = snapc_progress(s)
    if (ev == SNAPC_EVENT_CHECKPOINT .or. ev == SNAPC_EVENT_CHECKPOINT_FAILED) then
      if (snapc_last_checkpoint(s, info) == 1) then
        write(*, '(a,i0,a,i0,a,i0,a,i0)') "checkpoint n=", info%names%n, " handle=", info%handle, &
            " state=", info%state, " ok=", info%ok
        flush(6)
      end if
    end if
    if (snapc_is_terminating(s) == 1) exit
  end do
  write(*, '(a,i0,a,i0)') "result steps=", steps, " checksum=", checksum
  flush(6)
  call snapc_stop(s)
end program counter_f
