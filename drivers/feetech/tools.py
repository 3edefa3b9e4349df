"""The Feetech family's side of the per-arm tool commands (robot_runtime.family_tools): its calibration
bus and file location, its motor setup, its motor check on a port found, and the simulated benches
behind --sim."""

from __future__ import annotations

import contextlib

from pydantic import BaseModel

from drivers.feetech.bus import BusError, Motor, MotorNotRespondingError
from drivers.feetech.calibration import FeetechCalibrationBus, calibration_path
from drivers.feetech.config import FeetechArmConfig
from drivers.feetech.models import norm_modes
from drivers.feetech.setup import assign, baud_code, find_single_motor, setup_order
from drivers.feetech.sim_calibration import sim_operator, uncalibrated_arm
from drivers.feetech.sim_factory import FACTORY_ID, FactoryBench
from drivers.feetech.sim_usb import SimulatedUsbBench
from robot_runtime.family_tools import (
    ArmPorts,
    CalibrateRequest,
    CalibrationTarget,
    FindPortRequest,
    MotorCheck,
    MotorSetup,
    MotorSetupBench,
    MotorSetupRequest,
    NamedMotor,
    SimulatedOperator,
)


def calibrate(config: BaseModel, request: CalibrateRequest, stack: contextlib.ExitStack) -> CalibrationTarget:
    arm = _feetech(config)
    model = arm.arm_model
    port, on_step = request.port or arm.port, None
    if request.simulate:
        bench = uncalibrated_arm(model.motors, stack)
        port, on_step = bench.port, sim_operator(bench)
    bus = arm.bus(port)
    bus.open()
    stack.callback(bus.close)
    return CalibrationTarget(
        bus=FeetechCalibrationBus(bus),
        path=calibration_path(arm, request.calibration_dir),
        full_turn=model.full_turn,
        modes=norm_modes([m.name for m in model.motors], arm.body_norm),
        identity=f"{model.name}, id '{arm.id}'",
        on_step=on_step,
    )


def setup_motors(config: BaseModel, request: MotorSetupRequest, stack: contextlib.ExitStack) -> MotorSetupBench:
    arm = _feetech(config)
    motors = setup_order(arm.arm_model.motors, request.motors)
    baud_code(arm.baudrate)  # a rate the servos cannot take fails before any motor is touched
    simulated = None
    port = request.port or arm.port
    if request.simulate:
        bench = stack.enter_context(FactoryBench([m.name for m in arm.arm_model.motors]))
        port, simulated = bench.simulator.port_path, SimulatedOperator(bench.description, bench.connect_only)
    bus = arm.bus(port, motors=())
    bus.open()
    stack.callback(bus.close)
    by_name = {m.name: m for m in motors}

    def set_up(motor: NamedMotor) -> MotorSetup:
        return assign(bus, by_name[motor.name], find_single_motor(bus, motor.name), arm.baudrate)

    return MotorSetupBench(
        port=port,
        model=arm.model,
        baud_bps=arm.baudrate,
        factory_id=FACTORY_ID,
        motors=tuple(motors),
        set_up=set_up,
        simulated=simulated,
    )


def find_port(config: BaseModel, request: FindPortRequest, stack: contextlib.ExitStack) -> ArmPorts:
    arm = _feetech(config)
    bench = stack.enter_context(SimulatedUsbBench([m.id for m in arm.arm_model.motors])) if request.simulate else None
    return ArmPorts(check=lambda port: check_motors(port, arm), bench=bench)


def check_motors(port: str, config: FeetechArmConfig) -> MotorCheck:
    """Ping every motor of the arm on `port` at the config's baud rate and check their models."""
    motors = config.arm_model.motors
    bus = config.bus(port)
    try:
        bus.open()
    except BusError as exc:
        return MotorCheck(port, config.baudrate, (), motors, str(exc))
    missing_ids: tuple[int, ...] = ()
    problem = None
    try:
        bus.check_motors()
    except MotorNotRespondingError as exc:
        missing_ids, problem = exc.motor_ids, str(exc)
    except BusError as exc:  # every motor answered; one reports another model
        problem = str(exc)
    finally:
        bus.close()
    answering: tuple[Motor, ...] = tuple(m for m in motors if m.id not in missing_ids)
    return MotorCheck(port, config.baudrate, answering, tuple(m for m in motors if m.id in missing_ids), problem)


def _feetech(config: BaseModel) -> FeetechArmConfig:
    if not isinstance(config, FeetechArmConfig):
        raise TypeError(f"a Feetech tool was given a {type(config).__name__}, not a FeetechArmConfig")
    return config
