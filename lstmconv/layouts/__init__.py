"""lstmconv.layouts"""
